"""Staffing answers: the fewest agents meeting a target, by simulation with the real
core, beside Erlang C and Erlang A; and the ``--target`` command line."""

from __future__ import annotations

import pytest

from services.router import whatif
from services.router.erlang import erlang_a
from services.router.simulate import QueueLoad, erlang_c_service_level
from services.router.staffing import erlang_answer, fewest_agents, parse_target

AHT = 180.0
IMPATIENT = QueueLoad("billing-en", "billing", 4 / 60, AHT, patience_s=120)  # 12 Erlangs
PATIENT = QueueLoad("billing-en", "billing", 4 / 60, AHT)


def test_targets_parse_and_bad_ones_are_refused() -> None:
    assert parse_target("80/20") == (0.8, 20.0)
    assert parse_target("95.5/10") == (0.955, 10.0)
    for bad in ("80", "0/20", "120/20", "80/-1", "x/20", "80/y"):
        with pytest.raises(ValueError, match="--target"):
            parse_target(bad)


@pytest.mark.parametrize("patience", [True, False])
def test_the_erlang_answers_are_the_first_head_count_meeting_the_target(patience: bool) -> None:
    load = IMPATIENT if patience else PATIENT

    def level(n: int) -> float:
        if patience:
            return erlang_a(n, load.rate_per_s, AHT, 120, 20).router_service_level
        return erlang_c_service_level(n, load.rate_per_s, AHT, 20) if n > 12 else 0.0

    answer = erlang_answer(load, 0.8, patience=patience, max_agents=200)
    assert answer is not None
    assert level(answer) >= 0.8 > level(answer - 1)
    assert erlang_answer(load, 0.8, patience=patience, max_agents=answer - 1) is None


def test_the_simulated_answer_meets_the_target_and_one_agent_fewer_does_not() -> None:
    answer = fewest_agents(IMPATIENT, 0.8, hours=24, seeds=(1, 2))
    assert answer.agents is not None
    by_count = {t.agents: t for t in answer.trials}
    assert by_count[answer.agents].service_level >= 0.8
    assert by_count[answer.agents - 1].service_level < 0.8
    # the simulation agrees with Erlang A; Erlang C (nobody hangs up) asks for more
    assert abs(answer.agents - (answer.erlang_a_agents or 0)) <= 1
    assert answer.erlang_c_agents is not None
    assert answer.erlang_c_agents > answer.agents
    for trial in answer.trials:
        assert trial.erlang_a is not None
        assert trial.service_level == pytest.approx(trial.erlang_a.router_service_level, abs=0.04)


def test_without_patience_the_answer_is_erlang_cs() -> None:
    answer = fewest_agents(PATIENT, 0.8, hours=24, seeds=(1, 2))
    assert answer.agents is not None
    assert abs(answer.agents - (answer.erlang_c_agents or 0)) <= 1
    assert answer.erlang_a_agents == answer.erlang_c_agents


def test_no_answer_within_the_limit_is_said() -> None:
    answer = fewest_agents(PATIENT, 0.8, hours=2, seeds=(1,), max_agents=10)
    assert answer.agents is None
    assert answer.erlang_c_agents is None


def test_the_command_line_prints_the_answer_beside_erlang(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [
        "--target",
        "80/20",
        "--queue",
        "billing-en",
        "--rate-per-minute",
        "4",
        "--aht-seconds",
        "180",
        "--patience-seconds",
        "120",
        "--hours",
        "12",
        "--seeds",
        "2",
    ]
    assert whatif.main(argv) == 0
    out = capsys.readouterr().out
    expected = fewest_agents(IMPATIENT, 0.8, hours=12, seeds=(1, 2))
    assert f"answer: {expected.agents} agents by simulation" in out
    assert f"Erlang A: {expected.erlang_a_agents}, Erlang C: {expected.erlang_c_agents}" in out
    starred = [line for line in out.splitlines() if line.startswith("*")]
    assert len(starred) == 1
    assert starred[0].split()[1] == str(expected.agents)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target", "80"], "--target"),
        (["--target", "80/20"], "--queue"),
        (["--target", "80/20", "--queue", "q", "--rate-per-minute", "4"], "give both"),
        (["--target", "80/20", "--queue", "q"], "--domain, --from and --to"),
    ],
)
def test_bad_staffing_arguments_exit_2_naming_the_argument(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert whatif.main(argv) == 2
    assert message in capsys.readouterr().err
