"""Build smp networks by name, with clear errors for bad names and offline weights."""

from __future__ import annotations

from typing import Any

import torch


class ModelConfigError(ValueError):
    """Unknown architecture / encoder / weights name."""


class PretrainedWeightsUnavailable(RuntimeError):
    """Pretrained encoder weights could not be downloaded or found in the cache."""


def architectures() -> list[str]:
    import segmentation_models_pytorch as smp

    return sorted(smp.MODEL_ARCHITECTURES_MAPPING)


def encoders() -> list[str]:
    from segmentation_models_pytorch.encoders import get_encoder_names

    return sorted(get_encoder_names())


def _closest(name: str, options: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, options, n=3)
    return f" Did you mean {', '.join(close)}?" if close else ""


def build_model(
    arch: str,
    encoder: str,
    num_classes: int,
    encoder_weights: str | None = None,
    **kwargs: Any,
) -> torch.nn.Module:
    """An smp model. `encoder_weights=None` never touches the network.

    With pretrained weights smp downloads them from the Hugging Face Hub
    (`smp-hub/<encoder>.<weights>`) into the HF cache; offline, that becomes a
    PretrainedWeightsUnavailable that says how to proceed.
    """
    import segmentation_models_pytorch as smp

    if arch.lower() not in smp.MODEL_ARCHITECTURES_MAPPING:
        raise ModelConfigError(
            f"unknown architecture {arch!r}.{_closest(arch.lower(), architectures())} "
            f"Valid: {', '.join(architectures())}"
        )
    if not encoder.startswith("tu-") and encoder not in encoders():
        raise ModelConfigError(
            f"unknown encoder {encoder!r}.{_closest(encoder, encoders())} Valid: "
            f"{', '.join(encoders())}, or any timm model as 'tu-<name>'"
        )
    if encoder_weights is not None and not encoder.startswith("tu-"):
        available = list(smp.encoders.encoders[encoder]["pretrained_settings"])
        if encoder_weights not in available:
            raise ModelConfigError(
                f"encoder {encoder!r} has no pretrained weights {encoder_weights!r}; "
                f"available: {', '.join(available) or 'none'} (or null for random init)"
            )
    try:
        return smp.create_model(
            arch, encoder_name=encoder, encoder_weights=encoder_weights, classes=num_classes, **kwargs
        )
    except (TypeError, ValueError) as exc:
        raise ModelConfigError(f"{arch} + {encoder}: invalid model option: {exc}") from exc
    except Exception as exc:
        if encoder_weights is None or not _is_download_error(exc):
            raise
        raise PretrainedWeightsUnavailable(
            f"cannot load the pretrained '{encoder_weights}' weights for encoder '{encoder}': "
            f"{type(exc).__name__}: {exc}. smp downloads them from the Hugging Face Hub "
            f"(repo smp-hub/{encoder}.{encoder_weights}) into the Hugging Face cache "
            "(HF_HOME, default ~/.cache/huggingface); with HF_HUB_OFFLINE=1 or no network they "
            "must already be there. Download them on a connected machine and copy the cache, "
            "or train from scratch with --model.encoder_weights null."
        ) from exc


def _is_download_error(exc: BaseException) -> bool:
    names = {type(e).__name__ for e in _chain(exc)}
    markers = {
        "LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError", "ConnectError",
        "HfHubHTTPError", "HTTPError", "Timeout", "ReadTimeout", "ConnectTimeout", "OSError",
        "RepositoryNotFoundError", "gaierror", "MaxRetryError",
    }
    return bool(names & markers)


def _chain(exc: BaseException | None):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__
