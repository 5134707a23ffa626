"""The gallery display: the kiosk page's server (SSE, /status, /healthz), its static files, service units."""
