"""The API's routers, one module per concern; gateway/app.py composes them."""
