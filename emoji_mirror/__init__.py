"""Emoji Mirror runtime: model registry, preprocessing, checkpoints and the live mirror pipeline."""


def __getattr__(name: str):
    """`emoji_mirror.predict_image(...)`, imported on first use so that importing the package stays light."""
    if name == "predict_image":
        from .predict import predict_image

        return predict_image
    raise AttributeError(f"module 'emoji_mirror' has no attribute {name!r}")
