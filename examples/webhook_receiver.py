"""A receiver for Freight's batch webhooks, verified with the `openai` SDK.

FREIGHT_WEBHOOK_SECRET=whsec_... uvicorn examples.webhook_receiver:app --port 9000
"""

from __future__ import annotations

import os

import openai
from fastapi import FastAPI, HTTPException, Request

app = FastAPI()
client = openai.OpenAI(api_key="unused")  # only its webhook verification is used here
seen: set[str] = set()  # webhook-ids already handled: a retry may repeat one
events: list[openai.types.webhooks.UnwrapWebhookEvent] = []


@app.post("/hooks")
async def hooks(request: Request) -> dict[str, bool]:
    body = await request.body()
    try:
        event = client.webhooks.unwrap(
            body, request.headers, secret=os.environ["FREIGHT_WEBHOOK_SECRET"]
        )
    except openai.InvalidWebhookSignatureError:
        raise HTTPException(400, "bad signature") from None
    if event.id not in seen:
        seen.add(event.id)
        events.append(event)
        print(event.type, event.data.id)  # batch.completed batch_... (or msgbatch_...)
    return {"ok": True}
