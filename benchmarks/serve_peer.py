"""The hand-written server `benchmarks/serve.py` compares `dltrain serve` with, written as tutorials write it:
FastAPI on uvicorn, the Keras model loaded once, `model.predict` on each request's instances.

    python benchmarks/serve_peer.py MODEL.keras PORT
"""

import sys

import keras
import numpy as np
import uvicorn
from fastapi import FastAPI

model = keras.models.load_model(sys.argv[1])
app = FastAPI()


@app.post("/v1/models/peer:predict")
def predict(body: dict):
    x = np.array(body["instances"], dtype="float32")
    predictions = model.predict(x, verbose=0)
    return {"predictions": predictions.tolist()}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
