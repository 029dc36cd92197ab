"""Print a model's bits per byte on the validation plays, and a draft's greedy agreement with it.

    python -m course_utils.evaluate --model shakespeare-gpt --draft shakespeare-gpt-draft

See ``course_utils.evaluation`` for exactly how both are measured.
"""

from __future__ import annotations

import argparse

from .evaluation import bits_per_byte, greedy_agreement, model_context


def main(argv: list[str] | None = None) -> None:
    from .data import load_corpus
    from .hub import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="shakespeare-gpt", help="bundled name, hub id or folder")
    parser.add_argument("--draft", default=None, help="also report this draft's greedy agreement")
    args = parser.parse_args(argv)
    model, tokenizer = load_model(args.model)
    texts = list(load_corpus().validation.values())
    context = model_context(model)
    print(f"{args.model}: {bits_per_byte(model, tokenizer, texts, context):.4f} bits per byte "
          f"on the validation plays (context {context}, stride {context // 2})")
    if args.draft:
        draft, _ = load_model(args.draft)
        rate = greedy_agreement(draft, model, tokenizer, texts, context)
        print(f"{args.draft}: agrees with {args.model}'s greedy next token on {rate:.1%} of positions")


if __name__ == "__main__":
    main()
