"""The benchmarks' result checks: a skipped torch.compile baseline must never hide a wrong fused result."""
import pytest
import torch

from benchmarks._common import UnusableBaseline, assert_close, baseline_verdict


def test_non_finite_compile_output_is_an_unusable_baseline():
    expected = torch.randn(8, 16)
    with pytest.raises(UnusableBaseline, match="op infer bf16 compile"):
        assert_close(torch.full_like(expected, float("nan")), expected, "bf16", "op infer bf16 compile", baseline=True)


@pytest.mark.parametrize("baseline", [False, True])
def test_wrong_results_still_fail(baseline):
    expected = torch.randn(8, 16)
    nan = torch.full_like(expected, float("nan"))
    if not baseline:  # a fused result that is not finite fails, whatever eager computed
        with pytest.raises(AssertionError, match="non-finite"):
            assert_close(nan, expected, "bf16", "fused")
    with pytest.raises(AssertionError, match="non-finite"):  # both non-finite: not torch.compile's fault
        assert_close(nan, nan.clone(), "bf16", "x", baseline=baseline)
    with pytest.raises(AssertionError, match="relative error"):
        assert_close(expected + 1, expected, "fp32", "x", baseline=baseline)


def test_baseline_verdict_is_kept_but_a_wrong_result_raises_every_time():
    calls = []

    def unusable():
        calls.append("unusable")
        raise UnusableBaseline("why")

    def wrong():
        calls.append("wrong")
        raise AssertionError("wrong")

    verdicts = {}
    assert baseline_verdict(verdicts, ("a",), lambda: calls.append("ok")) is None
    assert baseline_verdict(verdicts, ("a",), lambda: calls.append("ok")) is None
    assert baseline_verdict(verdicts, ("b",), unusable) == "why"
    assert baseline_verdict(verdicts, ("b",), unusable) == "why"
    for _ in range(2):
        with pytest.raises(AssertionError):
            baseline_verdict(verdicts, ("c",), wrong)
    assert calls == ["ok", "unusable", "wrong", "wrong"]
