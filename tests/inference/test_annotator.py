import pytest

from inference.annotator import Annotator
from inference.exceptions import InvalidLabels

pytestmark = pytest.mark.model

# Cases the 135M default model gets right with the annotator's prompt (it is
# not right on every input; these pin that the label choice follows content).
CASES = [
    ("I loved this film, it was wonderful and moving.", ["positive", "negative"], 0),
    ("Terrible service, I want my money back.", ["positive", "negative"], 1),
    ("The cat sat on the mat and purred.", ["sports", "animals", "finance"], 1),
    ("Stocks fell sharply after the bank raised interest rates.", ["sports", "animals", "finance"], 2),
]


def test_annotator_picks_the_likely_label_deterministically(model):
    annotator = Annotator(model)
    for content, labels, expected in CASES:
        annotation = annotator.annotate(content, labels)
        assert annotation.label_index == expected, (content, annotation)
        assert annotation.label == labels[expected]
        assert len(annotation.logprobs) == len(labels) and all(lp < 0 for lp in annotation.logprobs)
        assert annotation.logprobs[expected] == max(annotation.logprobs)
    content, labels, _ = CASES[0]
    assert annotator.annotate(content, labels) == annotator.annotate(content, labels)


@pytest.mark.parametrize(
    "content, labels",
    [("text", []), ("text", ["only"]), ("text", ["a", "a"]), ("text", ["a", " "]), ("", ["a", "b"])],
)
def test_bad_label_sets_are_typed_errors(model, content, labels):
    with pytest.raises(InvalidLabels):
        Annotator(model).annotate(content, labels)
