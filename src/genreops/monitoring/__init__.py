"""Stage 3, monitoring: the drift gate's detector, the drift record, the monitoring store, views.

It sits below serving: the predictor routes on the gate's verdict and writes to the store.
"""
