"""The Triton model repository template, installed as ``genreops.triton_models`` (package data).

A package, not a plain folder, so ``importlib.resources`` finds it in a wheel and in a checkout
alike; Triton never imports it (publish copies each ``model.py`` into the rendered repository).
"""
