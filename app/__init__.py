"""adapt: adapt pretrained models to your own data over HTTP."""
