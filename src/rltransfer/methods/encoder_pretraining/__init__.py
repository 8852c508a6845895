"""methods/encoder_pretraining."""
