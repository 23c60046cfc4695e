"""The worker: validates batches, runs their requests on the engines, finalises them."""
