"""The ceilings `make bench-gateway` sets the gateway beside, on the same server stack (uvicorn, FastAPI) and
machine but with none of the farm's middleware, authentication, rate limits or presentation: a constant answer,
and one prediction read by id through the farm's read pool (``models.db``), the least a poll can do.
"""

import os

from fastapi import FastAPI, HTTPException

from models.db import get_read_sessionmaker
from models.tables import Prediction

DATABASE_URL = os.environ["FARM_DATABASE_URL"]

app = FastAPI()


@app.get("/constant")
@app.get("/healthz")  # what tests.farm.wait_healthy waits for
async def constant() -> dict[str, str]:
    return {"id": "floor", "status": "starting"}


@app.get("/read/{prediction_id}")
async def read(prediction_id: str) -> dict[str, str]:
    async with get_read_sessionmaker(DATABASE_URL)() as session:
        prediction = await session.get(Prediction, prediction_id)
    if prediction is None:
        raise HTTPException(404)
    return {"id": prediction.id, "status": prediction.status}
