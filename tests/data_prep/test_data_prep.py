"""data_prep: resumable verified downloads (local HTTP server, file:// URLs), hg38 bgzip pipeline,
offline window BEDs -- all on real files from the shared folder, no internet."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from Bio import SeqIO

from data_prep import make_windows
from data_prep.download import fetch_bed, fetch_hg38, md5_from_listing
from data_prep.fetch import ChecksumError, DownloadError, download
from dnadiff.data.sources import GenomeSource
from dnadiff.data.genome import Genome
from dnadiff.data.windows import BedError, read_bed


class _RangeHandler(BaseHTTPRequestHandler):
    """Serves the files of ``root``; honours ``Range: bytes=N-`` except under /norange/."""

    root: Path
    ranges: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        honour = not self.path.startswith("/norange/")
        path = self.root / self.path.rsplit("/", 1)[-1]
        if not path.is_file():
            self.send_error(404, "not found")
            return
        data = path.read_bytes()
        rng = self.headers.get("Range")
        if rng:
            type(self).ranges.append(rng)
        if rng and honour:
            start = int(rng.split("=")[1].rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            data = data[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server(tmp_path: Path, shared_data: Path):
    """A bounded local HTTP server on 127.0.0.1 serving the real chrM FASTA; shut down after the test."""
    root = tmp_path / "served"
    root.mkdir()
    shutil.copyfile(shared_data / "genome" / "human_chrM.fa", root / "chrM.fa")
    handler = type("Handler", (_RangeHandler,), {"root": root, "ranges": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    watchdog = threading.Timer(60, httpd.shutdown)  # stops by itself even if a test hangs
    watchdog.daemon = True
    watchdog.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root / "chrM.fa", handler
    finally:
        watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_verifies_sha256(server, tmp_path: Path) -> None:
    url, src, _ = server
    dest = download(f"{url}/chrM.fa", tmp_path / "out" / "chrM.fa", sha256=_sha(src), progress=False)
    assert dest.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["chrM.fa"]
    assert download(f"{url}/gone.fa", dest, sha256=_sha(src), progress=False) == dest  # kept, not refetched


def test_download_resumes_with_range(server, tmp_path: Path) -> None:
    url, src, handler = server
    dest = tmp_path / "chrM.fa"
    Path(f"{dest}.part").write_bytes(src.read_bytes()[:5000])
    download(f"{url}/chrM.fa", dest, sha256=_sha(src), progress=False)
    assert handler.ranges == ["bytes=5000-"]
    assert dest.read_bytes() == src.read_bytes() and not Path(f"{dest}.part").exists()


def test_download_restarts_when_server_ignores_range(server, tmp_path: Path) -> None:
    url, src, handler = server
    dest = tmp_path / "chrM.fa"
    Path(f"{dest}.part").write_bytes(b"garbage" * 100)
    download(f"{url}/norange/chrM.fa", dest, sha256=_sha(src), progress=False)
    assert handler.ranges == ["bytes=700-"] and dest.read_bytes() == src.read_bytes()


def test_checksum_mismatch_and_http_error_write_nothing(server, tmp_path: Path) -> None:
    url, src, _ = server
    dest = tmp_path / "chrM.fa"
    with pytest.raises(ChecksumError, match=r"chrM.fa: sha256 .* != expected 0000"):
        download(f"{url}/chrM.fa", dest, sha256="0" * 64, progress=False)
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{url}/missing.fa", dest, progress=False)
    assert list(tmp_path.iterdir()) == [tmp_path / "served"]


def test_file_url_resume(tmp_path: Path, shared_data: Path) -> None:
    src = shared_data / "genome" / "human_chrM.fa"
    dest = tmp_path / "chrM.fa"
    Path(f"{dest}.part").write_bytes(src.read_bytes()[:1234])
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    download(src.as_uri(), dest, md5=md5, progress=False)
    assert dest.read_bytes() == src.read_bytes()


def test_fetch_hg38_pipeline_offline(tmp_path: Path, shared_data: Path) -> None:
    """UCSC-style plain gzip + md5sum.txt -> bgzip + .fai + .gzi, readable, equal to the source."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    src = shared_data / "genome" / "human_chrM.fa"
    raw = mirror / "hg38.fa.gz"
    raw.write_bytes(gzip.compress(src.read_bytes()))
    (mirror / "md5sum.txt").write_text(f"{hashlib.md5(raw.read_bytes()).hexdigest()}  hg38.fa.gz\n")
    assert md5_from_listing(mirror / "md5sum.txt", "hg38.fa.gz") is not None
    out = tmp_path / "data"
    final = fetch_hg38(out, raw.as_uri(), (mirror / "md5sum.txt").as_uri(), progress=False)
    assert sorted(p.name for p in final.parent.iterdir()) == ["hg38.fa.gz", "hg38.fa.gz.fai", "hg38.fa.gz.gzi", "md5sum.txt"]
    (record,) = SeqIO.parse(str(src), "fasta")
    genome = Genome(final)
    assert genome.bgzf and genome.fetch("MT_human", 0, len(record)) == str(record.seq)
    (mirror / "md5sum.txt").write_text(f"{'0' * 32}  hg38.fa.gz\n")
    with pytest.raises(ChecksumError, match="md5"):
        fetch_hg38(tmp_path / "data2", raw.as_uri(), (mirror / "md5sum.txt").as_uri(), progress=False)
    assert not (tmp_path / "data2" / "hg38" / "hg38.fa.gz").exists()


def test_make_windows_output_is_readable(tmp_path: Path, hg38_fasta_gz: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "windows.bed"
    assert make_windows.main(["--fasta", str(hg38_fasta_gz), "--seq-len", "4096", "--out", str(out)]) == 0
    windows = read_bed(out, Genome(hg38_fasta_gz))
    assert all(len(w) == 4096 for w in windows)
    counts = {s: sum(w.split == s for w in windows) for s in ("train", "valid", "test")}
    assert counts == {"train": 16 * 24 - 3, "valid": 48, "test": 48}  # 3 telomere windows dropped
    assert min(w.start for w in windows) == 12_288
    dm = GenomeSource.from_config({"fasta": str(hg38_fasta_gz), "bed": str(out), "seq_len": 4096, "max_eval_windows": None})
    assert [(c, s, e) for c, s, e in dm.dataset("valid").windows()] == [
        (w.contig, w.start, w.end) for w in windows if w.split == "valid"
    ]
    assert make_windows.main(["--fasta", str(tmp_path / "no.fa"), "--seq-len", "10", "--out", str(tmp_path / "x.bed")]) == 1
    assert "FASTA file not found" in capsys.readouterr().err
    assert not (tmp_path / "x.bed").exists()


def test_fetch_bed_validates_and_deletes_bad(tmp_path: Path) -> None:
    good = tmp_path / "good.bed"
    good.write_text("chr1\t0\t131072\ttrain\nchr1\t131072\t262144\tvalid\n")
    dest = fetch_bed(tmp_path / "a", good.as_uri(), progress=False)
    assert len(read_bed(dest)) == 2
    bad = tmp_path / "bad.bed"
    bad.write_text("chr1\t0\t131072\ttrain\nchr1\t5\n")
    with pytest.raises(BedError, match="line 2"):
        fetch_bed(tmp_path / "b", bad.as_uri(), progress=False)
    assert not (tmp_path / "b" / "hg38" / "human-sequences.bed").exists()
