"""HTTP transport shared by every domain's `api.py`: problems, parsing, routing, middlewares."""
