"""Kubernetes and KServe deployments of a model repository, and capacity plans from bench measurements.

`write_target(repository, "kubernetes" | "kserve" | "compose", output, KubeOptions(...))` writes a deployment;
`plan_capacity(read_report(path), rate, p99_ms)` sizes one. Nothing here talks to a cluster.
"""

from tritongen.kube.plan import CapacityPlan, find_report, plan_capacity, read_report
from tritongen.kube.write import TARGETS, DeployResult, KubeOptions, default_output, read_plan, write_target

__all__ = ["TARGETS", "CapacityPlan", "DeployResult", "KubeOptions", "default_output", "find_report", "plan_capacity",
           "read_plan", "read_report", "write_target"]
