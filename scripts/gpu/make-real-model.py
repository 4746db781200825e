"""On the GPU host: a model directory of SmolLM2-135M-Instruct's real weights
(bf16 safetensors) from the Q4_1 GGUF that shared/gpu/real/ carries, with the
tokenizer files of the dummy model's directory (shared/gpu/make-model.py).
shared/gpu/make-real-model.py stops at save_pretrained on transformers of the
bundle ("The model is quantized with QuantizationMethod.GGUF and is not
serializable", docs/runs/2026-12-06-h200-real-weights/): the weights are
already dequantized when loaded, so the quantizer is dropped before saving.
Usage: make-real-model.py GGUF TOKENIZER_DIR OUT_DIR (the gguf package on
PYTHONPATH)."""
import os, shutil, sys
import torch
from transformers import AutoModelForCausalLM

gguf, tokdir, out = sys.argv[1:4]
model = AutoModelForCausalLM.from_pretrained(
    os.path.dirname(os.path.abspath(gguf)), gguf_file=os.path.basename(gguf), dtype=torch.bfloat16)
model.hf_quantizer = None
if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config
model.save_pretrained(out, safe_serialization=True)
for f in os.listdir(tokdir):
    if f.startswith(("tokenizer", "special_tokens", "chat_template", "generation_config")):
        shutil.copy(os.path.join(tokdir, f), out)
print("params", sum(p.numel() for p in model.parameters()), "->", out, sorted(os.listdir(out)))
