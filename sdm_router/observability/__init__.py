"""Observability: every Prometheus metric defined once, and structured JSON logging."""

from sdm_router.observability.logging import (
    JSONFormatter,
    configure_logging,
    redact,
    request_id_var,
)
from sdm_router.observability.metrics import GatewayMetrics

__all__ = ["GatewayMetrics", "JSONFormatter", "configure_logging", "redact", "request_id_var"]
