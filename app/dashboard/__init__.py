"""The web dashboard: static HTML, ES modules and CSS served at `/`; it talks to /v1 like any client."""
