"""The cases on input files: size bombs, FIFOs, devices, folders and sockets where a file
should be, deeply nested documents, damaged CIFAR-10 batches and MNIST IDX files, and data
files rcert cannot take."""

from __future__ import annotations

import pickle
import struct
import zipfile

import numpy as np

from .core import (
    DECLARED,
    DEEP,
    DEVICE,
    FIFO,
    FOLDER,
    SIZE,
    SOCKET,
    M,
    case,
    chain,
    check,
    convert,
    inspect,
    margin,
    plot,
    report,
    train,
)
from .make_files import (
    bad_crc,
    baseline_case,
    cifar,
    cifar_batch,
    deep,
    good_inputs,
    gz_idx_bomb,
    idx,
    mnist,
    npy,
    npy_bytes,
    npy_header,
    pickled_bytes_bomb,
    sparse,
    special,
    toml_config,
    writes,
    zipped,
)
from .make_models import arch_json, pythae_folder, rcert_safetensors, safetensors_header, state_dict


def size_bombs() -> None:
    """Files that declare far more than they hold, or hold far more than they may."""
    cat = "size bombs"
    case("npy_huge_shape", margin(M, data="{t}/x.npy"),
         writes("x.npy", npy_header((10**12, 1, 8, 8))), match=SIZE, category=cat)
    case("npy_huge_header_length", margin(M, data="{t}/x.npy"),
         writes("x.npy", b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFF0) + b"{" * 32),
         match=SIZE + r"|header", category=cat)
    case("npy_trailing_bytes", margin(M, data="{t}/x.npy"),
         writes("x.npy", npy_bytes(good_inputs()) + bytes(1 << 20)),
         match=SIZE + r"|trailing|extra|after", category=cat)
    case("npz_member_huge_shape_deflated", margin(M, data="{t}/x.npz"),
         writes("x.npz", zipped({"x.npy": npy_header((10**11, 1, 8, 8), data=bytes(1 << 20))},
                                zipfile.ZIP_DEFLATED)), match=SIZE, category=cat)
    case("idx_gz_overlong_50mb", margin(M, data="mnist:{t}/mn:test"),
         mnist(images=idx((10, 28, 28), data=bytes(50 << 20)), gz=True), match=SIZE,
         category=cat)
    case("idx_gz_bomb_1_5gb", margin(M, data="mnist:{t}/mn:test"), gz_idx_bomb(),
         match=SIZE, category=cat)
    case("idx_huge_dims", margin(M, data="mnist:{t}/mn:test"),
         mnist(images=idx((2**31, 2**31, 2**31), data=bytes(64))), match=SIZE, category=cat)
    case("safetensors_huge_header_length", margin("{t}/m.safetensors"),
         writes("m.safetensors", safetensors_header(b'{"a":1}', length=2**40)),
         match=DECLARED, category=cat)
    case("safetensors_tensor_huge_shape", margin("{t}/m.safetensors"),
         writes("m.safetensors", safetensors_header(
             {"w": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 4 * 10**12]}},
             bytes(16))), match=DECLARED, category=cat)
    case("check_config_300mb_sparse", check("{t}/big.toml"), sparse("big.toml", 300 << 20),
         match=SIZE, category=cat)
    baseline_case("baseline_300mb_sparse", None, SIZE, category=cat,
                  file=sparse("base.json", 300 << 20))
    case("plot_input_300mb_sparse", plot("{t}/r.json"), sparse("r.json", 300 << 20),
         match=SIZE, category=cat)
    case("arch_huge_widths", margin("{t}/sd.pt", "--arch", "{t}/wide.json"),
         chain(state_dict(), arch_json("wide.json", hidden=[10**6, 10**6])),
         match=r"parameters|too (big|large)|widths", category=cat)
    case("pythae_config_300mb_sparse", margin("{t}/pyf"),
         pythae_folder(edit=lambda f: sparse("model_config.json", 300 << 20)(f)), match=SIZE,
         category=cat)
    case("cifar_pickle_bytes_bomb", margin(M, data="cifar10:{t}/cf:test"),
         cifar(pickled_bytes_bomb()), match=SIZE + r"|unpickle|intact", category=cat)


def special_files() -> None:
    """``<kind>_as_<slot>``: a FIFO, socket, folder or device link in each slot that reads a
    file, and a device itself as the model."""
    cat = "FIFOs, devices, folders, sockets"
    expected = {"fifo": FIFO, "socket": SOCKET, "dir": FOLDER, "devzero": DEVICE,
                "devnull": DEVICE}
    # (slot, argv, the file the slot reads, other setup, kinds)
    slots = [
        ("model", margin("{t}/S"), "S", None, ("fifo", "socket", "dir", "devzero", "devnull")),
        ("data_npy", margin(M, data="{t}/S.npy"), "S.npy", None, ("fifo",)),
        ("arch", margin("{t}/sd.pt", "--arch", "{t}/S.json"), "S.json", state_dict(),
         ("fifo",)),
        ("check_config", check("{t}/S.toml"), "S.toml", None, ("fifo", "devzero")),
        ("baseline", check(), "S.json", None, ("fifo", "devzero")),
        ("plot_input", plot("{t}/S.json"), "S.json", None, ("fifo", "dir")),
        ("convert_src", convert("{t}/S.rcert"), "S.rcert", None, ("fifo",)),
        ("inspect_model", inspect("{t}/S"), "S", None, ("fifo",)),
        ("train_data", train("{t}/S.npy"), "S.npy", None, ("fifo",)),
        ("cifar_batch", margin(M, data="cifar10:{t}/cf:test"), "cf/test_batch", None,
         ("fifo",)),
        ("mnist_images", margin(M, data="mnist:{t}/mn:test"), "mn/t10k-images-idx3-ubyte",
         None, ("fifo",)),
        ("pythae_config", margin("{t}/pyf"), "pyf/model_config.json",
         pythae_folder(edit=lambda f: (f / "model_config.json").unlink()), ("fifo",)),
        ("report_partial", report(M), "report/.partial/vae-digits.jsonl", None, ("fifo",)),
    ]
    for slot, argv, file, other, kinds in slots:
        for kind in kinds:
            name = file.replace("S", kind)
            args = tuple(a.replace("{t}/S", "{t}/" + kind) for a in argv)
            if slot == "baseline":
                other = toml_config(baseline=name)
            case(f"{kind}_as_{slot}", args, chain(other, special(name, kind)),
                 match=expected[kind], category=cat)
    # A device itself, not a link to one.
    case("dev_zero_direct_model", margin("/dev/zero"), match=DEVICE, category=cat)


def deep_documents() -> None:
    """JSON and TOML nested deeper than a recursive parser can go, in every document read."""
    cat = "deeply nested documents"
    baseline_case("deep_json_baseline_arrays", deep(), DEEP, category=cat)
    case("deep_json_plot_input", plot("{t}/r.json"), writes("r.json", deep()), match=DEEP,
         category=cat)
    case("deep_json_arch", margin("{t}/sd.pt", "--arch", "{t}/deep.json"),
         chain(state_dict(), writes("deep.json", deep())), match=DEEP, category=cat)
    case("deep_json_factory_arg", margin("{t}/sd.pt", "--factory", "mypkg.models:build",
                                         "--factory-arg", "x=" + deep(60_000)),
         chain(state_dict(), writes("mypkg/__init__.py", ""), writes(
             "mypkg/models.py", "import rcert\n\ndef build(**kw):\n    return rcert.build_model("
             "'mlp', input_shape=(1, 8, 8), latent_dim=4, hidden=(16,))\n")),
         match=DEEP, category=cat)
    case("deep_toml_check_config", check(),
         toml_config("[run]\nallow = " + deep(50_000) + "\n"), match=DEEP, category=cat)
    case("deep_json_safetensors_metadata", margin("{t}/m.safetensors"),
         rcert_safetensors("m.safetensors", text=deep()), match=DEEP + r"|corrupt",
         category=cat)
    case("deep_json_legacy_header", margin("{t}/m.rcert"),
         writes("m.rcert", b"RCERTCKP" + struct.pack("<IQ", 1, 200_000) + deep().encode()),
         match=DEEP + r"|corrupt", category=cat)
    case("deep_json_pythae_config", margin("{t}/pyf"),
         pythae_folder(edit=lambda f: (f / "model_config.json").write_text(deep())),
         match=DEEP + r"|not a pythae", category=cat)


def cifar_batches() -> None:
    """CIFAR-10 test batches with wrong labels, data or layout."""
    cat = "CIFAR-10 batches"

    def bad_cifar(id, batch, match):
        case(id, margin(M, data="cifar10:{t}/cf:test"), cifar(batch), match=match,
             category=cat)

    bad_cifar("cifar_labels_ragged", cifar_batch(labels=[[1], [2, 3], [4], []]), r"labels")
    bad_cifar("cifar_labels_nested", cifar_batch(labels=[[1], [2], [3], [4]]), r"labels")
    bad_cifar("cifar_labels_too_few", cifar_batch(labels=[1, 2]), r"labels")
    bad_cifar("cifar_data_float", cifar_batch(data=np.zeros((4, 3072))), r"uint8|dtype|float")
    bad_cifar("cifar_batch_a_list", pickle.dumps([1, 2, 3], protocol=2),
              r"dict|not a CIFAR-10 batch|list")
    case("cifar_shape_does_not_fit_model", margin(M, data="cifar10:{t}/cf:test"), cifar(),
         match=r"shape|expects", category=cat)


def idx_files() -> None:
    """MNIST (and Fashion-MNIST) IDX files with a wrong magic, cut data or bad gzip."""
    cat = "MNIST IDX files"

    def bad_idx(id, setup, match, spec="mnist:{t}/mn:test"):
        case(id, margin(M, data=spec), setup, match=match, category=cat)

    bad_idx("idx_wrong_magic", mnist(images=idx((4, 28, 28), magic=0x0801)), r"magic")
    bad_idx("idx_data_cut", mnist(images=idx((4, 28, 28))[:-100]),
            r"truncated|promises|holds")
    bad_idx("idx_gz_corrupt", writes("mn/t10k-images-idx3-ubyte.gz",
                                     b"\x1f\x8b\x08\x00" + bytes(40)),
            r"corrupt|intact|gzip|cannot read")
    bad_idx("idx_shape_does_not_fit_model", mnist(), r"shape|expects")
    bad_idx("idx_fashion_wrong_magic", mnist(images=idx((4, 28, 28), magic=0x0802)),
            r"magic", spec="fashion-mnist:{t}/mn:test")


def data_files() -> None:
    """``.npy`` and ``.npz`` data of the wrong shape, range or layout, damaged, or misnamed."""
    cat = "data files"

    def bad_data(id, setup, match, spec="{t}/x.npy"):
        case(f"data_{id}", margin(M, data=spec), setup, match=match, category=cat)

    bad_data("npy_1d", npy("x.npy", np.zeros(64, np.float32)), r"shape|one sample per row")
    bad_data("npy_ints_out_of_range", npy("x.npy", np.full((2, 1, 8, 8), 300, np.int32)),
             r"0\.\.255|range|integers")
    bad_data("npy_random_bytes", writes("x.npy", np.random.default_rng(2).bytes(300)),
             r"cannot load|not a|npy|magic|corrupt")
    bad_data("npy_truncated", writes("x.npy", npy_bytes(good_inputs())[:-50]),
             r"truncated|cannot load|damaged|declares|holds")
    bad_data("npz_several_arrays", writes("x.npz", zipped({"a.npy": npy_bytes(good_inputs()),
                                                           "b.npy": npy_bytes(good_inputs())})),
             r"several|key", spec="{t}/x.npz")
    bad_data("npz_y_wrong_length", writes("x.npz", zipped({
        "x.npy": npy_bytes(good_inputs()), "y.npy": npy_bytes(np.arange(5))})),
        r"\by\b|labels", spec="{t}/x.npz")
    bad_data("npz_bad_crc", writes("x.npz", bad_crc(zipped({"x.npy": npy_bytes(
        good_inputs())}))), r"CRC|corrupt|cannot read|damaged", spec="{t}/x.npz")
    case("data_path_with_colon", margin(M, data="{t}/a:b.npy"),
         npy("a:b.npy", good_inputs()), match=r"colon|':'|separat|unexpected item",
         category=cat)
