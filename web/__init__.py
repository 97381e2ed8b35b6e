"""Browser assets of SpeedData's Tornado app, installed as the package ``speeddata.web``.

Read them with ``importlib.resources.files("speeddata.web")``.
"""
