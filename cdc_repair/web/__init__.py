"""HTTP status page, JSON API and Prometheus endpoint (stdlib server; see `server.py`).

`start_web(settings.web, status_provider, readiness_provider) -> WebServer` (`.port`, `.url`, `.stop()`).
The status document's shape is `status_doc.StatusDoc` (example: `cdc_repair_dev.example_status`).
"""

from cdc_repair.web.server import ReadinessProvider, StatusProvider, WebServer, start_web
from cdc_repair.web.status_doc import StatusDoc

__all__ = ["ReadinessProvider", "StatusDoc", "StatusProvider", "WebServer", "start_web"]
