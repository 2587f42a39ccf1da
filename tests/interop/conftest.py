"""torch's dynamo ONNX exporter imports triton; choose Triton's interpreter first (no GPU) so that the Triton
tests that run after these in the same process still can (runtime/triton_check.py: select_device)."""

from runtime.triton_check import select_device

select_device()
