import pytest

from egoasl.data.records import MQAnnotations, MQClip, MQInstance
from egoasl.data.taxonomy import Taxonomy
from egoasl.errors import EgoaslError

QUOTED = '"cut_/_chop_/_slice_a_vegetable,_fruit,_or_meat"'


def test_ids_follow_sorted_labels_and_keep_quotes_exactly():
    clips = {
        "a": MQClip("a", "v", "train", 0, 10, [MQInstance("use_phone", 0, 1), MQInstance(QUOTED, 2, 3)]),
        "b": MQClip("b", "v", "val", 0, 10, [MQInstance("drink_beverage", 0, 1)]),
        "c": MQClip("c", "v", "test", 0, 10, []),
    }
    tax = Taxonomy.from_annotations(MQAnnotations("x.json", "official", clips))
    assert tax.labels == [QUOTED, "drink_beverage", "use_phone"]
    assert tax.id(QUOTED) == 0 and tax.label(2) == "use_phone" and len(tax) == 3
    assert QUOTED in tax and "cut_/_chop_/_slice_a_vegetable,_fruit,_or_meat" not in tax


def test_unknown_and_duplicate_labels():
    tax = Taxonomy(["a", "b"])
    with pytest.raises(EgoaslError, match="unknown label 'c'"):
        tax.id("c")
    with pytest.raises(EgoaslError, match="duplicate labels"):
        Taxonomy(["a", "a"])
