"""Training the default model's projector and LoRA adapters on generated driving scenes."""
