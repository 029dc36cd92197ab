"""Where ``transformers`` renamed something between the releases the course supports.

``pyproject.toml`` admits a range of ``transformers`` releases; the lock pins the one CI tested.
When a release inside the range renames an API, the course calls the new name and falls back
to the old one here, in one helper per rename, so that no lesson cell and no other module has to
know which release is installed, and none triggers a deprecation message (nbval compares
stderr, so such a message fails a lesson).

Renames whose new name every supported release has need no helper: the course calls the new
name directly. So far: ``tokenizer.decode`` of a batch (B, T) of ids for ``batch_decode``,
``add_special_tokens({"extra_special_tokens": ...})`` for ``additional_special_tokens``, and
``TokenizersBackend`` for ``PreTrainedTokenizerFast`` (now its alias); 5.3, the oldest release
``pyproject.toml`` admits, has all three, and ``tests/test_transformers_interop.py`` checks that
the old ones are not called.

It also hides, where a caller asks, messages ``transformers`` logs about its own internal calls,
which the caller cannot act on (``hidden_transformers_messages``).

``tests/test_transformers_interop.py`` drives every path from the course to ``transformers``
and fails on any warning, from Python's ``warnings`` or from ``transformers``' own logger; run
``python scripts/check.py --newest`` to try the newest releases the ranges allow.

Taught in: lesson 04 (``output_cache``, ``cache_argument``), lesson 07 (the hidden messages).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Iterator

# What transformers 5.x logs during assisted generation about the calls it makes to the assistant
# itself (it passes the assistant a generation config together with arguments, and a
# min_new_tokens processor it then also builds): nothing the caller passed causes them.
ASSISTED_GENERATION_MESSAGES = ("Passing `generation_config` together with generation-related arguments",
                                "A custom logits processor of type")


def output_cache(output):
    """The KV cache (a ``transformers.Cache``) of a ``transformers`` model's output, or None.

    transformers 5.24 renamed the output field ``past_key_values`` to ``cache``; reading the old
    name there logs "`past_key_values`/`cache_params` are deprecated". Earlier 5.x releases have
    only ``past_key_values``. The field is looked up among the output dataclass's own fields, so
    the deprecated alias is never touched where the new name exists.
    """
    fields = getattr(output, "__dataclass_fields__", {})
    if "cache" in fields:
        return output.cache
    if "past_key_values" in fields:
        return output.past_key_values
    raise TypeError(f"{type(output).__name__} has no KV cache field (neither 'cache' nor 'past_key_values')")


def cache_argument(model, cache) -> dict:
    """The keyword argument that passes a KV cache into a ``transformers`` model's forward:
    ``{"cache": cache}`` on 5.24+, ``{"past_key_values": cache}`` before (5.24 renamed it, and
    the old name is deprecated there). Use as ``model(ids, **cache_argument(model, cache))``."""
    parameters = inspect.signature(model.forward).parameters
    return {"cache": cache} if "cache" in parameters else {"past_key_values": cache}


@contextlib.contextmanager
def hidden_transformers_messages(*fragments: str) -> Iterator[None]:
    """Within the block, drop the log records of ``transformers`` whose message contains one of
    ``fragments``; every other message still shows. For messages about transformers' own
    internal calls (``ASSISTED_GENERATION_MESSAGES``), never to hide a caller's mistake."""
    if not fragments:
        raise ValueError("fragments must name at least one message to hide")

    def keep(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in fragments)

    from transformers import logging as transformers_logging

    handlers = transformers_logging.get_logger().handlers  # the library's root logger, configured
    for handler in handlers:
        handler.addFilter(keep)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(keep)
