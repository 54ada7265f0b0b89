"""facts.model's classes behave as the @dataclass classes they replace (their methods are written once, in Record,
for doctor's start-up): construction by position or keyword, defaults, fresh default containers, the errors, repr,
equality, and the dataclasses functions."""

from __future__ import annotations

import dataclasses

import pytest

from echopanel_setup.facts.model import ClientFacts, Facts, GpuProcess, ProbeInfo


def test_positional_keyword_and_defaults() -> None:
    assert GpuProcess(7, "vllm").name == "vllm" and GpuProcess(7).used_mib is None
    probe = ProbeInfo("gpu", status="timeout")
    assert (probe.name, probe.duration_ms, probe.status, probe.error) == ("gpu", 0.0, "timeout", None)


def test_each_instance_gets_its_own_default_container() -> None:
    one, two = ClientFacts(), ClientFacts()
    one.packages["httpx"] = "0.28"
    assert two.packages == {} and Facts().probes is not Facts().probes


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: GpuProcess(), "missing required argument: 'pid'"),
        (lambda: GpuProcess(1, pid=2), "multiple values for argument 'pid'"),
        (lambda: GpuProcess(1, nope=2), "unexpected keyword argument 'nope'"),
        (lambda: GpuProcess(1, "a", 2, 3), "takes 3 positional arguments but 4 were given"),
    ],
)
def test_wrong_arguments_are_type_errors(make, fragment: str) -> None:
    with pytest.raises(TypeError, match=fragment):
        make()


def test_repr_equality_and_the_dataclass_functions() -> None:
    probe = ProbeInfo("gpu", 1.5)
    assert repr(probe) == "ProbeInfo(name='gpu', duration_ms=1.5, status='ok', error=None)"
    assert probe == ProbeInfo(name="gpu", duration_ms=1.5) and probe != ProbeInfo("disk", 1.5)
    assert probe != ("gpu", 1.5, "ok", None)
    assert dataclasses.replace(probe, status="crashed").status == "crashed" and probe.status == "ok"
    facts = Facts()
    assert Facts.from_dict(facts.to_dict()) == facts
    with pytest.raises(TypeError):
        hash(probe)


def test_every_facts_class_is_a_record() -> None:
    """A class declared with plain @dataclass compiles its own methods at import: doctor's start-up pays for it."""
    from echopanel_setup.facts import model

    classes = [c for c in vars(model).values() if isinstance(c, type) and dataclasses.is_dataclass(c)]
    assert len(classes) > 20 and all(issubclass(c, model.Record) for c in classes)
