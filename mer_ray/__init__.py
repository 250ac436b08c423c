"""mer-ray: cyclic pseudo-label mining for multimodal emotion recognition on Ray."""
__version__ = "0.1.0"
