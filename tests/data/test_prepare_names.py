"""``data prepare``: a source whose frame folder would be --out itself or its parent is refused by name (issue 24,
attack 14), and a full disk stops the run naming the output, instead of blaming each source."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from cpnet.data import prepare
from tests.data.media import indexed_frames, write_video

pytestmark = pytest.mark.robustness  # an attack or a failure injected: `pytest -m robustness`


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    write_video(root / "..mp4", indexed_frames(4, 32, 48), codec="mpeg4")  # id '.': --out itself
    write_video(root / "...mp4", indexed_frames(4, 32, 48), codec="mpeg4")  # id '..': the folder above --out
    write_video(root / "good.mp4", indexed_frames(4, 32, 48), codec="mpeg4")
    write_video(root / "sub" / "..mp4", indexed_frames(4, 32, 48), codec="mpeg4")  # 'sub/.' with keep_tree
    return root


@pytest.mark.parametrize("rel, keep_tree", [("..mp4", False), ("...mp4", False), ("sub/..mp4", True)])
def test_an_id_that_is_not_a_folder_of_its_own_is_refused(rel: str, keep_tree: bool) -> None:
    with pytest.raises(ValueError, match=rf"^{rel}: its frame folder would be .*, not a folder of its own"):
        prepare.frame_folder_id(Path(rel), keep_tree)


def test_dot_names_are_bad_sources_and_the_others_are_extracted(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = prepare.extract_frames(src, out)
    assert sorted(report.bad) == ["...mp4", "..mp4"]
    assert "not a folder of its own" in report.bad["..mp4"] and str(src / "..mp4") in report.bad["..mp4"]
    assert sorted(report.done) == ["good.mp4", "sub/..mp4"]  # 'sub__.' is a folder of its own
    assert sorted(p.name for p in out.iterdir()) == ["good", "sub__."]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # nothing written beside --out


def _disk_full(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_stops_extraction_naming_the_output(src: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("PIL.Image.Image.save", _disk_full)
    out = tmp_path / "out"
    with pytest.raises(OSError, match=rf"No space left on device while writing {out / 'good'} \(from "
                                      rf"{src / 'good.mp4'}\); stopped") as caught:
        prepare.extract_frames(src, out)
    assert caught.value.errno == errno.ENOSPC
    assert not any(out.iterdir())  # the partial folder is removed


def test_a_full_disk_stops_reencoding_instead_of_blaming_the_sources(src: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import av

    def mux(self: object, packet: object) -> None:
        raise av.error.OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(av.container.OutputContainer, "mux", mux)
    out = tmp_path / "out"
    with pytest.raises(OSError, match=r"No space left on device while writing .*\.mp4 \(from .*\); stopped"):
        prepare.reencode(src, out, 32)
