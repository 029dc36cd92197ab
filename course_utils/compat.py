"""Where ``transformers`` renamed something between the releases the course supports.

``pyproject.toml`` admits a range of ``transformers`` releases; the lock pins the one CI tested.
When a release inside the range renames an API, the course calls the new name and falls back
to the old one here, in one helper per rename, so that no lesson cell and no other module has to
know which release is installed, and none triggers a deprecation message (nbval compares
stderr, so such a message fails a lesson).

``tests/test_transformers_interop.py`` drives every path from the course to ``transformers``
and fails on any warning, from Python's ``warnings`` or from ``transformers``' own logger; run
``python scripts/check.py --newest`` to try the newest releases the ranges allow.
"""

from __future__ import annotations


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
