from course_utils.tokenizer import END_OF_TEXT, save_for_transformers, train_bpe

TEXTS = ["Friends, Romans, countrymen, lend me your ears;", "I come to bury Caesar, not to praise him."] * 20


def test_training_is_deterministic():
    first = train_bpe(TEXTS, vocab_size=300)
    second = train_bpe(TEXTS, vocab_size=300)
    assert first.to_str() == second.to_str()


def test_byte_level_round_trip_with_no_unknown_token():
    tokenizer = train_bpe(TEXTS, vocab_size=300)
    text = "Thou art more lovely — ça va? 日本語 \t\n"
    assert tokenizer.decode(tokenizer.encode(text).ids) == text
    assert tokenizer.token_to_id(END_OF_TEXT) == 0


def test_saved_tokenizer_loads_with_autotokenizer(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = train_bpe(TEXTS, vocab_size=300)
    save_for_transformers(tokenizer, tmp_path, context_length=64)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.encode("lend me your ears") == tokenizer.encode("lend me your ears").ids
    assert loaded.eos_token == END_OF_TEXT and loaded.eos_token_id == 0
