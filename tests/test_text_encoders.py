import pytest
import torch

from egoasl.data.text_encoders import HashedWordEncoder, build_text_encoder, text_feature_path
from egoasl.errors import EgoaslError


def test_hashed_encoder_is_deterministic_and_token_wise():
    enc = HashedWordEncoder(dim=16)
    a, b = enc.encode(["Where did I put the scissors?", "where is the scissors"], max_tokens=48)
    assert a.shape == (7, 16) and b.shape == (4, 16)  # 6 words + "?"; 4 words
    torch.testing.assert_close(a[5], b[3])  # the same word, the same vector, whatever the sentence
    torch.testing.assert_close(a.norm(dim=1), torch.ones(7))
    assert enc.encode(["a b c d e"], max_tokens=3)[0].shape == (3, 16)


def test_encoders_never_download(tmp_path):
    with pytest.raises(EgoaslError, match="needs --weights"):
        build_text_encoder("clip", None)
    with pytest.raises(EgoaslError, match="never downloads"):
        build_text_encoder("clip", str(tmp_path / "missing"))
    with pytest.raises(EgoaslError, match="unknown text encoder"):
        build_text_encoder("bert")


def test_feature_path_layout(tmp_path):
    assert text_feature_path(tmp_path, "c1", "a1", 3) == tmp_path / "c1" / "a1_3.pt"
