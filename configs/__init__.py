"""Search spaces, Prometheus and Grafana configuration, installed as ``genreops.configs``.

A package, not a plain folder, so ``importlib.resources`` finds the files in a wheel and in a
checkout alike.
"""
