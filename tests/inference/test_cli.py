import pytest
"""The three inference commands, run as a user would (in-process through click)."""
import json

from click.testing import CliRunner

from node.cli import cli

pytestmark = pytest.mark.model


def test_infer_streams_a_completion():
    result = CliRunner().invoke(cli, ["infer", "--prompt", "What is the capital of France? Answer briefly.", "--max-tokens", "12"])
    assert result.exit_code == 0, result.output
    assert "Paris" in result.output


def test_infer_json_then_verify_round_trip(tmp_path):
    runner = CliRunner()
    made = runner.invoke(cli, ["infer", "--prompt", "Name three colours.", "--max-tokens", "16", "--json"])
    assert made.exit_code == 0, made.output
    output = json.loads(made.output.strip().splitlines()[-1])
    claim = {
        "model_sha256": output["model_sha256"],
        "messages": [{"role": "user", "content": "Name three colours."}],
        "max_tokens": 16,
    }
    claims = [
        dict(claim, output_tokens=output["output_tokens"]),
        # What an OpenAI-style front end returns: text and a finish_reason, no token ids.
        dict(claim, output_text=output["text"], finish_reason=output["finish_reason"]),
        dict(claim, output_text=output["text"]),
        dict(claim, output_tokens=list(reversed(output["output_tokens"][:-1])) + [7, 7, 7]),
        dict(claim, output_tokens=[]),
        dict(claim, model_sha256="11" * 32, output_tokens=output["output_tokens"]),
        {"messages": "nonsense"},
        dict(claim, output_text=output["text"], finish_reason="eos"),
    ]
    path = tmp_path / "claims.json"
    path.write_text(json.dumps(claims))
    verified = runner.invoke(cli, ["verify", str(path), "--details"])
    assert verified.exit_code == 0, verified.output
    lines = [json.loads(line) for line in verified.output.strip().splitlines()]
    assert [line["accepted"] for line in lines] == [True, True, True, False, False, False, False, False]
    assert lines[0]["score"] == 1.0 and lines[1]["score"] == 1.0
    # The text claim with its finish_reason is the same claim as the tokens, end-of-generation token included.
    assert lines[1]["tokens"] == lines[0]["tokens"] == len(output["output_tokens"])
    assert all(isinstance(line["score"], float) for line in lines)
    assert all("error" in line for line in lines[4:])
    assert "finish_reason" in lines[-1]["error"]

    single = tmp_path / "one.json"
    single.write_text(json.dumps(claims[0]))
    one = runner.invoke(cli, ["verify", str(single)])
    assert one.exit_code == 0 and json.loads(one.output) == {"score": 1.0, "accepted": True}


def test_annotate_prints_the_label_index():
    result = CliRunner().invoke(cli, ["annotate", "--content", "What a great, happy day!", "--labels", "positive,negative"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["label_index"] == 0


def test_missing_model_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(cli, ["annotate", "--content", "x", "--labels", "a,b", "--model", str(tmp_path / "m.gguf")])
    assert result.exit_code != 0
    assert "m.gguf" in result.output and "not found" in result.output
