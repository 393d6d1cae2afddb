"""The admin console: a browser front end, served by the gateway under `/console/`, over the
admin JSON API (`/admin/...`). Plain HTML, CSS and JavaScript modules, nothing fetched from
anywhere else at run time (air-gapped sites): see `docs/console.md`."""

from gateway.console.routes import console_routes
from gateway.console.sso import ConsoleSso, sso_routes

__all__ = ["ConsoleSso", "console_routes", "sso_routes"]
