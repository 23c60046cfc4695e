"""Running batches on a Ray cluster: Ray Data streams a batch's requests from the store
through a pool of engine actors, and the driver writes each result back to the store.

    source.py    the streaming read: leased request rows, one read task per line range
    actor.py     EngineActor: one engine per actor, requests run by worker/runner.py
    executor.py  the driver: lease the batch, run the pipeline, record results live
    handoff.py   the worker's side: which batches go to Ray, run in the background
"""
