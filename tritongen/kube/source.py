"""Where a Kubernetes deployment gets its model repository: a volume claim, an image, or an object store.

`--models-from` takes one of
  pvc:CLAIM[/SUBPATH]   a PersistentVolumeClaim holding the repository (mounted read-only at /models)
  image:REFERENCE       an image with the repository at /models (copied into the pod by an init container)
  s3://BUCKET/PATH      read by Triton itself (also s3://HOST:PORT/BUCKET/PATH for S3-compatible stores)
  gs://BUCKET/PATH      read by Triton itself
Credentials for an object store are a Secret named with `--credentials-secret`: the manifests refer to it by
name and never hold a key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tritongen.errors import TritongenError

KINDS = ("pvc", "image", "s3", "gs")
# The keys the Secret holds: the environment names Triton's S3 client reads, and the file name KServe's storage
# initializer expects for Google credentials, so one Secret serves both the Kubernetes and the KServe target.
S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
S3_OPTIONAL_KEYS = ("AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION")
GCS_KEY = "gcloud-application-credentials.json"
GCS_MOUNT = "/var/run/secrets/tritongen/gcs"

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
FORMS = "pvc:CLAIM (or pvc:CLAIM/SUBPATH), image:REFERENCE, s3://BUCKET/PATH or gs://BUCKET/PATH"


@dataclass(frozen=True)
class ModelSource:
    """The model repository's origin, as the manifests need it."""

    kind: str  # "pvc", "image", "s3" or "gs"
    location: str  # claim name, image reference, or the object-store URI
    subpath: str = ""  # inside the claim
    secret: str | None = None  # name of the Secret with object-store credentials

    @property
    def object_store(self) -> bool:
        return self.kind in ("s3", "gs")

    def kserve_uri(self) -> str:
        """KServe's `storageUri` for the same repository (its storage initializer fetches it into /mnt/models)."""
        if self.kind == "pvc":
            return f"pvc://{self.location}" + (f"/{self.subpath}" if self.subpath else "")
        if self.kind == "image":
            return f"oci://{self.location}"  # KServe's "modelcar": the image's /models, mounted without a copy
        return self.location

    def describe(self) -> str:
        where = {"pvc": f"PersistentVolumeClaim '{self.location}'" + (f", folder {self.subpath}" if self.subpath else ""),
                 "image": f"image {self.location} (its /models folder)",
                 "s3": f"S3 {self.location}", "gs": f"Google Cloud Storage {self.location}"}[self.kind]
        if self.object_store:
            where += f", credentials from Secret '{self.secret}'" if self.secret else ", no credentials Secret"
        return where


def default_source(app: str) -> ModelSource:
    return ModelSource("pvc", f"{app}-models")


def parse_source(text: str | None, app: str, secret: str | None = None) -> ModelSource:
    """`--models-from` (None: a claim named `<app>-models`) and `--credentials-secret`, checked."""
    if secret is not None and not _DNS_SUBDOMAIN.match(secret):
        raise TritongenError(f"--credentials-secret '{secret}' is not a valid Secret name",
                             "use lowercase letters, digits, '-' and '.', e.g. model-store-credentials")
    if text is None:
        source = default_source(app)
    elif text.startswith(("s3://", "gs://")):
        kind = text[:2]
        if len(text) <= 5 or text[5] == "/":
            raise TritongenError(f"--models-from '{text}' names no bucket", f"e.g. {kind}://my-bucket/model_repository")
        source = ModelSource(kind, text.rstrip("/"), secret=secret)
    elif text.startswith("pvc:"):
        claim, _, subpath = text[4:].partition("/")
        if not _DNS_SUBDOMAIN.match(claim):
            raise TritongenError(f"--models-from '{text}': '{claim}' is not a valid PersistentVolumeClaim name",
                                 "use lowercase letters, digits, '-' and '.', e.g. pvc:triton-models")
        source = ModelSource("pvc", claim, subpath.strip("/"))
    elif text.startswith("image:") and len(text) > 6:
        source = ModelSource("image", text[6:])
    else:
        raise TritongenError(f"--models-from '{text}' is not a model repository location", f"use {FORMS}")
    if secret is not None and not source.object_store:
        raise TritongenError(f"--credentials-secret is for object stores, but the repository comes from {source.kind}",
                             "drop --credentials-secret, or pass --models-from s3://... or gs://...")
    return source


def check_name(name: str, option: str = "--name") -> str:
    """A name for Services and Deployments: a DNS-1035 label (lowercase, digits, '-', a letter first, 63 at most)."""
    if not _DNS_LABEL.match(name):
        raise TritongenError(f"{option} '{name}' is not a valid Kubernetes name",
                             "use at most 63 lowercase letters, digits and '-', starting with a letter, e.g. triton-cnn")
    return name


def name_from(text: str, prefix: str = "triton") -> str:
    """A valid Kubernetes name derived from a model or folder name: `triton-<slug>`."""
    slug = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "model"
    return f"{prefix}-{slug}"[:63].rstrip("-")
