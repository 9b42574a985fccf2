"""The cases on models: hostile pickles (in models and everywhere else rcert unpickles), NaN
and inf in inputs and weights, damaged checkpoints, and foreign models rcert cannot build."""

from __future__ import annotations

import json
import struct

import numpy as np
import torch

from .core import (
    NONFINITE,
    OBJECTS,
    PICKLE,
    M,
    attack,
    case,
    chain,
    check,
    convert,
    curve,
    inspect,
    margin,
    report,
    train,
)
from .make_files import (
    NAN_X,
    PNG,
    baseline_case,
    cifar,
    good_inputs,
    npy,
    npy_bytes,
    spoiled,
    symlink,
    toml_config,
    write,
    writes,
    zipped,
)
from .make_models import (
    Payload,
    arch_json,
    btc_args,
    dae_checkpoint,
    edit_json,
    evil_torch,
    flipped,
    hostile_pickle,
    legacy,
    lightning,
    object_array,
    object_npy,
    pythae_folder,
    rcert_safetensors,
    save_model,
    st_save,
    state_dict,
    tiny_vae,
    torch_bytes,
    truncated,
    vanilla_state,
)

PICKLES = "hostile pickles"
#: A torch.save of a payload as ``evil.pt``, and the arch.json that would build it.
EVIL = chain(evil_torch(), arch_json())


def hostile_pickles_in_models() -> None:
    """Payloads in the model files rcert reads: torch.save, plain pickles, Lightning, pythae
    and beta-TCVAE checkpoints."""
    case("pickle_torch_zip_arch", margin("{t}/evil.pt", "--arch", "{t}/arch.json"),
         EVIL, match=PICKLE, category=PICKLES)
    case("pickle_plain_protocol2", margin("{t}/evil.pt", "--arch", "{t}/arch.json"),
         chain(writes("evil.pt", hostile_pickle), arch_json()), match=PICKLE,
         category=PICKLES)
    case("pickle_named_rcert", margin("{t}/evil.rcert"), evil_torch("evil.rcert"),
         match=PICKLE, category=PICKLES)
    case("pickle_lightning_ckpt_callbacks", margin("{t}/last.ckpt"),
         writes("last.ckpt", lambda t: torch_bytes(
             lightning(vanilla_state(), callbacks=Payload(t)))), match=PICKLE,
         category=PICKLES)
    pythae_evil = pythae_folder(edit=lambda f: (f / "model.pt").write_bytes(torch_bytes(
        {"model_state_dict": {"w": torch.zeros(1)}, "x": Payload(f.parent)})))
    case("pickle_pythae_model_pt", margin("{t}/pyf"), pythae_evil, match=PICKLE,
         category=PICKLES)
    case("pickle_pythae_encoder_pkl_untrusted", margin("{t}/pyf"),
         pythae_folder(edit=lambda f: (edit_json("model_config.json",
                                                 uses_default_encoder=False)(f),
                                       (f / "encoder.pkl").write_bytes(
                                           hostile_pickle(f.parent)))),
         match=r"pickle|trust", category=PICKLES)
    case("pickle_beta_tcvae_args", margin("{t}/checkpt-0000.pth"),
         writes("checkpt-0000.pth", lambda t: torch_bytes(
             {"state_dict": {"w": torch.zeros(2)}, "args": Payload(t)})), match=PICKLE,
         category=PICKLES)


def hostile_pickles_elsewhere() -> None:
    """Payloads in data files and baselines, and pickled models given to every command."""
    case("pickle_cifar_test_batch", margin(M, data="cifar10:{t}/cf:test"),
         cifar(hostile_pickle), match=PICKLE, category=PICKLES)
    case("pickle_npy_object", margin(M, data="{t}/x.npy"), object_npy(), match=OBJECTS,
         category=PICKLES)
    case("pickle_npz_object_y", margin(M, data="{t}/x.npz"),
         writes("x.npz", lambda t: zipped({"x.npy": npy_bytes(good_inputs()),
                                           "y.npy": npy_bytes(object_array(t),
                                                              allow_pickle=True)})),
         match=OBJECTS, category=PICKLES)
    case("pickle_inspect_torch", inspect("{t}/evil.pt", "--arch", "{t}/arch.json"), EVIL,
         match=PICKLE, category=PICKLES)
    case("pickle_convert_src", convert("{t}/evil.pt"), evil_torch(),
         match=PICKLE + r"|torch\.save|not an rcert", category=PICKLES)
    case("pickle_train_npy_object", train("{t}/x.npy"), object_npy(), match=OBJECTS,
         category=PICKLES)
    case("pickle_check_model", check(),
         chain(EVIL, toml_config(
             model='[[model]]\npath = "evil.pt"\narch = "arch.json"\ndata = "good.npy"\n'
                   'limit = 2\nn_samples = 20\n')), match=PICKLE, category=PICKLES)
    case("pickle_report_model", report("{t}/evil.pt", extra=("--arch", "{t}/arch.json")),
         EVIL, match=PICKLE, category=PICKLES)
    case("pickle_attack_model", attack("{t}/evil.pt", "--arch", "{t}/arch.json"), EVIL,
         match=PICKLE, category=PICKLES)
    case("pickle_curve_model", curve("{t}/evil.pt", "--arch", "{t}/arch.json"), EVIL,
         match=PICKLE, category=PICKLES)
    baseline_case("pickle_as_baseline", None, r"baseline.*(JSON|UTF-8)", category=PICKLES,
                  file=writes("base.json", hostile_pickle))


def nan_and_inf() -> None:
    """NaN and inf in the inputs of every command, in weights, and in checkpoint headers."""
    cat = "NaN and inf"
    inf_x = spoiled(np.inf, (2, 0, 0, 0))
    case("data_nan_npy", margin(M, data="{t}/x.npy"), npy("x.npy", NAN_X), match=NONFINITE,
         category=cat)
    case("data_inf_npy", margin(M, data="{t}/x.npy"), npy("x.npy", inf_x), match=NONFINITE,
         category=cat)
    case("data_nan_attack", attack(M, data="{t}/x.npy"), npy("x.npy", NAN_X),
         match=NONFINITE, category=cat)
    case("data_nan_curve", curve(M, data="{t}/x.npy"), npy("x.npy", NAN_X), match=NONFINITE,
         category=cat)
    case("data_nan_train", train("{t}/x.npy"), npy("x.npy", good_inputs(40) * np.where(
        np.arange(40)[:, None, None, None] == 5, np.nan, 1).astype(np.float32)),
         match=NONFINITE, category=cat)
    case("weights_nan_safetensors", margin("{t}/m.safetensors"),
         rcert_safetensors("m.safetensors", nan=True), match=NONFINITE, category=cat)
    case("weights_nan_legacy", margin("{t}/m.rcert"), legacy("m.rcert", nan=True),
         match=NONFINITE, category=cat)
    case("weights_nan_state_dict", margin("{t}/sd.pt", "--arch", "{t}/arch.json"),
         state_dict(nan=True), match=NONFINITE, category=cat)
    case("weights_nan_inspect", inspect("{t}/m.safetensors"),
         rcert_safetensors("m.safetensors", nan=True), match=NONFINITE, category=cat)
    case("recommended_r_nan_safetensors", margin("{t}/m.safetensors"),
         rcert_safetensors("m.safetensors", edit=lambda h: h.update(recommended_r=float("nan"))),
         match=r"recommended|\bnan\b", category=cat)
    case("recommended_r_nan_legacy", margin("{t}/m.rcert"),
         legacy("m.rcert", edit=lambda h: h.update(recommended_r=float("nan"))),
         match=r"recommended|\bnan\b", category=cat)


def _good_safetensors(t):
    return save_model(t, "m.safetensors")


def damaged_checkpoints() -> None:
    """Empty, truncated, flipped, foreign-bytes and wrong-version checkpoints."""
    cat = "damaged checkpoints"

    def bad_ckpt(id, name, setup, match, *, commands=("margin",)):
        for command in commands:
            argv = {"margin": margin("{t}/" + name), "inspect": inspect("{t}/" + name),
                    "convert": convert("{t}/" + name)}[command]
            suffix = "" if command == "margin" else f"_{command}"
            case(f"ckpt_{id}{suffix}", argv, setup, match=match, category=cat)

    every = ("margin", "inspect", "convert")
    bad_ckpt("zero_bytes_safetensors", "m.safetensors", writes("m.safetensors", b""),
             r"empty", commands=every)
    bad_ckpt("truncated_safetensors", "m.safetensors",
             truncated("m.safetensors", 0.5, _good_safetensors), r"truncated|corrupt")
    bad_ckpt("truncated_legacy", "m.rcert", truncated("m.rcert", 0.5, legacy("m.rcert")),
             r"truncated|corrupt", commands=("convert",))
    bad_ckpt("random_bytes", "m.safetensors",
             writes("m.safetensors", np.random.default_rng(0).bytes(4096)),
             r"not an rcert|unknown|not a model|corrupt|format", commands=("margin", "inspect"))
    bad_ckpt("renamed_png", "m.safetensors", writes("m.safetensors", PNG),
             r"not an rcert|unknown|not a model|PNG|format", commands=("margin", "inspect"))
    bad_ckpt("tensor_bytes_flipped", "m.safetensors",
             flipped("m.safetensors", _good_safetensors), r"SHA-256|corrupt|checksum")
    bad_ckpt("safetensors_without_rcert_metadata", "m.safetensors",
             lambda t: write(t, "m.safetensors", st_save(dict(tiny_vae().state_dict()))),
             r"metadata|architecture|--arch")
    bad_ckpt("legacy_frame_version_2", "m.rcert",
             lambda t: write(t, "m.rcert", b"RCERTCKP" + struct.pack("<IQ", 2, 2) + b"{}"),
             r"version")
    case("ckpt_symlink_loop", margin("{t}/loop.safetensors"),
         symlink("loop.safetensors", "loop.safetensors"), match=r"link|loop", category=cat)


def foreign_models() -> None:
    """Foreign models rcert cannot build as given: no or a wrong architecture, a failing
    factory, a layout of another library, an unsupported distribution or model."""
    cat = "foreign models"
    case("foreign_state_dict_without_arch", margin("{t}/sd.pt"), state_dict(),
         match=r"--arch|--factory|--library|how to build", category=cat)
    case("foreign_arch_does_not_fit", margin("{t}/sd.pt", "--arch", "{t}/a8.json"),
         chain(state_dict(), arch_json("a8.json", latent_dim=8)),
         match=r"does not fit|missing|shape", category=cat)
    case("foreign_arch_no_arch_key", margin("{t}/sd.pt", "--arch", "{t}/a.json"),
         chain(state_dict(), writes("a.json", json.dumps({"latent_dim": 4}))),
         match=r"no architecture|arch =|'arch'", category=cat)
    case("foreign_arch_with_rcert_checkpoint", margin(M, "--arch", "{t}/arch.json"),
         arch_json(), match=r"describes itself|--arch", category=cat)
    factory_src = ("import torch\n"
                   "def boom(**kw):\n    raise ValueError('bad width')\n"
                   "def not_module(**kw):\n    return 42\n")
    project = chain(state_dict(), writes("mypkg/__init__.py", ""),
                    writes("mypkg/models.py", factory_src))
    case("foreign_factory_raises", margin("{t}/sd.pt", "--factory", "mypkg.models:boom"),
         project, match=r"bad width|factory", category=cat)
    case("foreign_library_pytorch_vae_wrong_layout",
         margin("{t}/sd.pt", "--library", "pytorch-vae"), state_dict(),
         match=r"VanillaVAE|PyTorch-VAE|fc_mu|does not fit|missing", category=cat)
    case("foreign_lightning_without_state_dict", margin("{t}/last.ckpt"),
         writes("last.ckpt", torch_bytes({"epoch": 3, "pytorch-lightning_version": "1.5.6"})),
         match=r"state dict", category=cat)
    case("foreign_beta_tcvae_laplace", margin("{t}/checkpt-0000.pth"),
         writes("checkpt-0000.pth", torch_bytes({"state_dict": {"w": torch.zeros(2)},
                                                 "args": btc_args(dist="laplace")})),
         match=r"laplace|Gaussian", category=cat)
    case("foreign_pythae_refused_model", margin("{t}/pyf"),
         pythae_folder(edit=edit_json("model_config.json", name="AEConfig")),
         match=r"deterministic|AE", category=cat)


def deterministic_autoencoders() -> None:
    """A deterministic autoencoder (Lu & Chen's DAEs) asked for what needs sigma (SPEC
    section 9): a certified margin, a KL, a sigma threat, a threshold on a sigma-based
    column, a recommended r; and the families trained with the wrong encoder."""
    cat = "deterministic autoencoders"
    dae, ckpt = "{t}/dae.safetensors", dae_checkpoint()
    many = npy("x.npy", good_inputs(40))
    needs = r"deterministic autoencoder .*needs sigma"

    def dae_config(thresholds: str) -> object:
        # The model's path is relative to the config's folder, the data's to the working
        # folder: both are the case's folder.
        return chain(ckpt, toml_config(thresholds, model=(
            '[[model]]\npath = "dae.safetensors"\ndata = "good.npy"\nlimit = 2\nr = 0.5\n')))

    targeted = ("attack", "--model", dae, "--data", "{t}/good.npy", "--pairs", "2",
                "--lambda-values", "1", "--max-iter", "2", "--quiet", "--output",
                "{t}/result.txt")
    cases = [
        ("dae_margin", margin(dae), ckpt, needs + r".*latent-attack.*rcert attack"),
        ("dae_margin_with_r", margin(dae, "--r", "0.5", "--empirical"), ckpt,
         needs + r".*latent-attack"),
        ("dae_attack_threat_sigma", attack(dae, "--threat", "sigma"), ckpt,
         needs + r".*--threat mean"),
        ("dae_attack_kind_kl", (*targeted, "--kind", "kl"), ckpt, needs + r".*--kind w2"),
        ("dae_attack_downstream", ("attack", "--model", dae, "--data", "{t}/good.npy",
                                   "--kind", "downstream", "--pairs", "2", "--quiet",
                                   "--output", "{t}/result.txt"), ckpt, needs),
        ("dae_report_without_r", report(dae), ckpt, r"deterministic autoencoder.*no "
         r"recommended r.*--r"),
        ("dae_report_empirical_threat_sigma",
         report(dae, extra=("--r", "0.5", "--empirical", "--threat", "sigma")), ckpt,
         needs + r".*threat mean"),
        ("dae_check_min_mean_margin", check(), dae_config(
            "[thresholds]\nmin_mean_margin = 0.0\n"), r"deterministic autoencoder .*threshold "
         r"min_mean_margin .*needs sigma"),
        ("dae_check_certified_fraction", check(), dae_config(
            "[thresholds]\nmin_certified_fraction = 0.5\n"),
         r"deterministic autoencoder .*certified fraction.*needs sigma"),
        ("dae_check_abstain_fraction", check(), dae_config(
            "[thresholds]\nmax_abstain_fraction = 0.5\n"), r"deterministic autoencoder .*reads "
         r"abstain.*needs sigma"),
        ("dae_train_family_with_sigma",
         train("{t}/x.npy", "--family", "mmd-dae", "--sigma", "learned"), many,
         r"family mmd-dae is a deterministic autoencoder.*--sigma"),
        ("dae_train_kl_family_without_sigma", train("{t}/x.npy", "--sigma", "none"), many,
         r"family vae trains Gaussian encoders.*mmd-dae or swt-dae"),
        ("dae_train_tc_family_without_sigma",
         train("{t}/x.npy", "--family", "beta-tcvae", "--sigma", "none"), many,
         r"family beta-tcvae trains Gaussian encoders"),
        ("dae_train_seatbelt_without_sigma",
         train("{t}/x.npy", "--family", "seatbelt", "--sigma", "none"), many,
         r"hierarchical VAE needs Gaussian layers"),
    ]
    for id, argv, setup, match in cases:
        case(id, argv, setup, match=match, category=cat)
