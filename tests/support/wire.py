"""What the stock tritonclient makes of our wire messages, for the tests."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as tc
from tritonclient.grpc import service_pb2 as triton

from cnnserve.generated.inference import grpc_service_pb2 as pb


def tritonclient_reads(tensor: pb.ModelInferResponse.InferOutputTensor, raw: bytes) -> np.ndarray:
    """What ``InferResult.as_numpy`` returns to a tritonclient user for this output."""
    response = pb.ModelInferResponse(model_name="m", outputs=[tensor], raw_output_contents=[raw])
    result = tc.InferResult(triton.ModelInferResponse.FromString(response.SerializeToString()))
    array = result.as_numpy(tensor.name)
    assert array is not None
    return array
