"""What a precision conversion did and cost, as the build report and the manifest record it, and in words."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tritongen.precision.fidelity import FidelityReport
from tritongen.precision.speed import SpeedReport


@dataclass(frozen=True)
class PrecisionReport:
    """What the conversion did and cost: written to the build report and the manifest."""

    precision: str
    method: str
    io: str  # "fp32" or "fp16": the dtype of float inputs/outputs
    size_before: int
    size_after: int
    fidelity: FidelityReport
    tolerance: dict[str, Any]  # atol, rtol and how they were chosen
    calibration: dict[str, Any] | None = None
    speed: SpeedReport | None = None
    quantization: dict[str, Any] | None = None  # INT8 only: quantization_record()
    accepted_below_threshold: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "method": self.method, "io": self.io,
                "size_bytes": {"before": self.size_before, "after": self.size_after,
                               "ratio": round(self.size_after / self.size_before, 4) if self.size_before else None},
                "speed": self.speed.to_dict() if self.speed else None, "fidelity": self.fidelity.to_dict(),
                "tolerance": self.tolerance, "calibration": self.calibration, "quantization": self.quantization,
                "accepted_below_threshold": self.accepted_below_threshold, "notes": list(self.notes)}


def precision_summary(report: dict[str, Any]) -> list[str]:
    """Human lines for a precision report (as in the build result and manifest): method, size, speed, fidelity."""
    lines = [f"precision {report['precision']}: {report['method']}"]
    size = report.get("size_bytes") or {}
    if size.get("before"):
        lines.append(f"size {_mb(size['before'])} → {_mb(size['after'])} ({size['after'] / size['before']:.2f}×)")
    speed = report.get("speed")
    if speed:
        faster = speed["speedup"]
        lines.append(f"ONNX Runtime on this CPU, batch {speed['batch'] or 1}: {speed['ms_before']:.2f} → "
                     f"{speed['ms_after']:.2f} ms per batch ({faster:.2f}× the FP32 speed; load average "
                     f"{speed['load_average']:g} on {speed['threads']} cores)")
    fidelity = report["fidelity"]
    for name, o in fidelity["outputs"].items():
        top1 = f", top-1 agreement {o['top1_agreement']:.1%}" if o.get("top1_agreement") is not None else ""
        lines.append(f"fidelity {name}: max err {o['max_abs_err']:.2e} ({o['relative_error']:.2%} of its range){top1} "
                     f"on {fidelity['items']} items ({fidelity['source']})")
    quantization = report.get("quantization")
    if quantization:
        bits = "7-bit range (reduce_range)" if quantization["reduce_range"] else "full 8-bit range"
        lines.append(f"INT8 weights: {bits}, safe on {quantization['safe_on']} (built on {quantization['built_on']})")
    tolerance = report.get("tolerance") or {}
    if tolerance:
        lines.append(f"tolerance for validate: atol {tolerance['atol']:g}, rtol {tolerance['rtol']:g} ({tolerance['how']})")
    return lines


def _mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"
