import pytest

from inference.annotator import Annotator
from inference.exceptions import InvalidLabels


def test_annotator_picks_the_likely_label_deterministically(model):
    annotator = Annotator(model)
    first = annotator.annotate("I loved this film, it was wonderful and moving.", ["positive", "negative"])
    assert first.label_index == 0 and first.label == "positive"
    assert first == annotator.annotate("I loved this film, it was wonderful and moving.", ["positive", "negative"])
    animal = annotator.annotate("The cat sat on the mat and purred.", ["sports", "animals", "finance"])
    assert animal.label == "animals"
    assert len(animal.logprobs) == 3 and all(lp < 0 for lp in animal.logprobs)


@pytest.mark.parametrize(
    "content, labels",
    [("text", []), ("text", ["only"]), ("text", ["a", "a"]), ("text", ["a", " "]), ("", ["a", "b"])],
)
def test_bad_label_sets_are_typed_errors(model, content, labels):
    with pytest.raises(InvalidLabels):
        Annotator(model).annotate(content, labels)
