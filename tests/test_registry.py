"""The one Registry behind tasks, schemes and algorithms: names, hints, labels, families, lazy built-ins."""

from __future__ import annotations

import pytest

from fednlp_bench.registry import Registry


class Base:
    name = ""


class Alpha(Base):
    name = "alpha"
    label = "Alpha"
    family = "greek"


class AlphaPlus(Alpha):
    name = "alpha_plus"  # inherits family, not label


def test_lazy_builtins_hints_labels_and_families() -> None:
    loaded: list[int] = []

    def builtins() -> list[type]:
        loaded.append(1)
        return [Alpha]

    reg: Registry[type[Base]] = Registry("widget", Base, builtins=builtins)
    assert loaded == []  # nothing imported until asked
    assert reg.names() == ["alpha"] and loaded == [1]
    reg.register(AlphaPlus)
    assert list(reg) == ["alpha", "alpha_plus"] and "alpha" in reg and len(reg) == 2
    assert reg.label("alpha") == "Alpha" and reg.label("alpha_plus") == "alpha_plus" and reg.label("nope") == "nope"
    assert reg.family("alpha_plus") == "greek" and reg.family("nope") is None
    assert reg.order("alpha_plus") == 1 and reg.order("nope") == 2
    assert reg.help() == "alpha | alpha_plus"
    with pytest.raises(ValueError, match=r"unknown widget 'alpah'\. Did you mean 'alpha'\? Choose one of"):
        reg.lookup("alpah")
    with pytest.raises(TypeError, match="not a Base subclass"):
        reg.register(int)  # type: ignore[arg-type]

    class Clash(Base):
        name = "alpha"

    with pytest.raises(ValueError, match="already registered by Alpha"):
        reg.register(Clash)


def test_import_paths_and_custom_error() -> None:
    class Oops(ValueError):
        pass

    reg: Registry[type] = Registry("thing", None, error=Oops, importable=True)
    with pytest.raises(ValueError, match="needs a class attribute `name`"):
        reg.lookup("collections:OrderedDict")  # a class without `name` cannot be registered
    with pytest.raises(Oops, match="cannot import module 'no_such_mod_xyz'"):
        reg.lookup("no_such_mod_xyz:Thing")
    with pytest.raises(Oops, match="has no attribute 'Nope'"):
        reg.lookup("collections:Nope")
    assert reg.find("no_such_mod_xyz:Thing") is None


def test_the_three_registries_share_it() -> None:
    from fednlp_bench.algorithms.registry import ALGORITHMS
    from fednlp_bench.partitioners import PARTITIONERS, PartitionError
    from fednlp_bench.tasks.registry import TASKS

    assert all(isinstance(r, Registry) for r in (ALGORITHMS, PARTITIONERS, TASKS))
    assert PARTITIONERS.label("dirichlet_label") == "Dirichlet" and ALGORITHMS.label("fedadam") == "FedAdam"
    assert ALGORITHMS.family("fedyogi") == "fedopt" and ALGORITHMS.family("fedavg") is None
    with pytest.raises(PartitionError, match="Did you mean 'shard'"):
        PARTITIONERS.lookup("shardd")
