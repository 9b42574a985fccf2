"""The cases on commands: malformed baselines and results, bad options and ``rcert check``
configs, outputs that must not be written, ``rcert train`` on bad data, control characters
in names, and ``rcert inspect`` on the bad models of the other categories."""

from __future__ import annotations

import json
import os

import numpy as np

from .core import (
    CASES,
    FAST,
    GOOD,
    LINKED,
    MODELS,
    NONFINITE,
    M,
    attack,
    case,
    chain,
    check,
    convert,
    curve,
    inspect,
    margin,
    plot,
    report,
    train,
)
from .make_files import (
    NAN_X,
    baseline_case,
    curve_doc,
    good_inputs,
    margin_doc,
    mutated,
    npy,
    report_doc,
    result_file,
    symlink,
    toml_config,
    writes,
)
from .make_models import legacy, save_model, state_dict


def malformed_baselines() -> None:
    """``rcert check`` baselines that are no report, or a damaged one."""
    baseline_case("baseline_a_list", lambda: [report_doc()], r"baseline.*(report|object|list)")
    baseline_case("baseline_no_summary",
                  mutated(report_doc, lambda d: d["models"]["vae-digits"].pop("summary")),
                  r"baseline.*summary|summary.*baseline")
    baseline_case("baseline_number_as_string",
                  mutated(report_doc, lambda d: d["models"]["vae-digits"]["summary"][
                      "mean_margin"].update(bound_certified="0.05")),
                  r"baseline.*(number|string|bound_certified)")
    baseline_case("baseline_schema_version_99",
                  mutated(report_doc, lambda d: d.update(schema_version=99)),
                  r"baseline.*(schema|version)")
    baseline_case("baseline_wrong_kind",
                  mutated(report_doc, lambda d: d.update(kind="margin")),
                  r"baseline.*(kind|report)")
    baseline_case("baseline_models_a_list",
                  mutated(report_doc, lambda d: d.update(models=[d["models"]["vae-digits"]])),
                  r"baseline.*models")
    baseline_case("baseline_model_not_object",
                  mutated(report_doc, lambda d: d.update(models={"vae-digits": [1, 2]})),
                  r"baseline.*(model|object)")
    baseline_case("baseline_nan_token", lambda: json.dumps(report_doc()).replace(
        '"schema_version": 1', '"schema_version": NaN'), r"baseline.*(NaN|JSON)")


def malformed_results_for_plot() -> None:
    """``rcert plot`` of documents that are no result, or a damaged one."""
    cat = "malformed results for plot"

    def bad_result(id, make, match, kind="margins"):
        case(id, plot("{t}/r.json", kind=kind), result_file("r.json", make), match=match,
             category=cat)

    bad_result("plot_result_a_list", lambda: [margin_doc()], r"not an rcert result|object")
    bad_result("plot_result_no_inputs", mutated(margin_doc, lambda d: d.pop("inputs")),
               r"inputs|not an rcert result")
    bad_result("plot_result_schema_99", mutated(margin_doc, lambda d: d.update(
        schema_version=99)), r"schema|version")
    bad_result("plot_result_wrong_kind_for_plot", margin_doc, r"curve|kind", kind="curves")
    bad_result("plot_result_missing_columns", mutated(margin_doc, lambda d: d.update(
        inputs=[{"index": r["index"]} for r in d["inputs"]])),
        r"column|lacks|none of", kind="certified-fraction")
    bad_result("plot_result_text_in_column", mutated(margin_doc, lambda d: [
        r.update(bound_certified="abc") for r in d["inputs"]] and None),
        r"number|bound_certified")
    bad_result("plot_result_number_as_string", mutated(margin_doc, lambda d: [
        r.update(bound_certified=str(r["bound_certified"])) for r in d["inputs"]] and None),
        r"number|string|bound_certified")
    bad_result("plot_curve_config_not_object", mutated(curve_doc, lambda d: d.update(
        config=[1, 2])), r"config", kind="curves")
    bad_result("plot_report_schema_99", mutated(report_doc, lambda d: d.update(
        schema_version=99)), r"schema|version")
    case("plot_out_bad_suffix", plot("{t}/r.json", out="{t}/fig.pdf"),
         result_file("r.json", margin_doc), match=r"suffix|\.png|\.svg", category=cat)


def bad_options() -> None:
    """Option values out of range or of the wrong type, unknown options and datasets."""
    cat = "bad options"
    options = [
        ("n_samples_huge", ("--n-samples", "1000000000000"), r"n-samples|n_samples"),
        ("n_samples_zero", ("--n-samples", "0"), r"n-samples|n_samples"),
        ("seed_negative", ("--seed", "-1"), r"seed"),
        ("seed_2_64", ("--seed", "18446744073709551616"), r"seed"),
        ("seed_2_70", ("--seed", str(2**70)), r"seed"),
        ("r_nan", ("--r", "nan"), r"--r\b|\br\b"),
        ("r_negative", ("--r", "-1"), r"--r\b|\br\b"),
        ("m_above_one", ("--m", "1.5"), r"--m\b|\bm\b"),
        ("alpha_zero", ("--alpha", "0"), r"alpha"),
        ("memory_mb_zero", ("--memory-mb", "0"), r"memory"),
        ("limit_zero", ("--limit", "0"), r"limit"),
        ("device_cuda", ("--device", "cuda"), r"cuda"),
        ("allow_unknown", ("--allow", "everything"), r"allow|everything|choice"),
        ("unknown_option", ("--bogus", "1"), r"bogus|no such option"),
        ("data_unknown_dataset", ("--data", "nope:test"), r"nope|dataset"),
        ("data_shape_does_not_fit", ("--data", "dsprites:test:n=4:res=16"),
         r"shape|expects"),
    ]
    for id, extra, match in options:
        case(f"margin_{id}", margin(M, *extra), match=match, category=cat)
    empirical = [
        ("n_check_zero", ("--n-check", "0"), r"n.check"),
    ]
    for id, extra, match in empirical:
        case(f"margin_empirical_{id}", margin(M, "--empirical", *extra), match=match,
             category=cat)
    for id, value in (("negative", "-1"),):
        case(f"attack_L_{id}", attack(M, "--L", value), match=r"\bL\b|--L", category=cat)
    for id, value in (("nan", "nan,1"),):
        case(f"curve_radii_{id}", curve(M, "--radii", value), match=r"radii|rho",
             category=cat)
    case("report_n_samples_huge", report(M, extra=("--n-samples", "1000000000000")),
         match=r"n-samples|n_samples", category=cat)
    case("inspect_device_cuda", inspect(M, "--device", "cuda"), match=r"cuda", category=cat)
    case("no_command", (), match=r"command", category=cat)
    case("env_max_file_mb_bad", margin(M), match=r"RCERT_MAX_FILE_MB", category=cat,
         env={"RCERT_MAX_FILE_MB": "lots"})


def check_configs() -> None:
    """``rcert check`` configs that are no TOML, or say something wrong."""
    cat = "check configs"

    def bad_config(id, setup, match):
        case(id, check(), setup, match=match, category=cat)

    bad_config("check_not_toml", writes("rcert.toml", "[[model]\npath ="), r"TOML")
    bad_config("check_no_model", writes("rcert.toml", "[run]\ndevice = 'cpu'\n"),
               r"model")
    bad_config("check_unknown_key", toml_config("", model=(
        f'[[model]]\npath = "{MODELS}/vae-digits.safetensors"\nradius = 1\n')),
        r"radius|unknown key")
    bad_config("check_r_nan", toml_config(model=(
        f'[[model]]\npath = "{MODELS}/vae-digits.safetensors"\nr = nan\n')), r"\br\b")
    bad_config("check_n_samples_huge", toml_config(model=(
        f'[[model]]\npath = "{MODELS}/vae-digits.safetensors"\ndata = "good.npy"\n'
        'limit = 2\nn_samples = 1000000000000\n')), r"n_samples|n-samples")
    bad_config("check_second_model_missing", toml_config(
        '[[model]]\npath = "nope.safetensors"\n'), r"nope\.safetensors|exist")
    bad_config("check_fraction_above_one", toml_config(
        "[thresholds]\nmin_certified_fraction = 2\n"), r"min_certified_fraction")
    bad_config("check_violations_without_empirical", toml_config(
        "[thresholds]\nmax_violations = 0\n"), r"empirical")


OUTPUTS = "output files"


def output_files_of_margin() -> None:
    """``rcert margin`` outputs it must not write: a missing folder, a folder, a device, a
    name too long, the model it reads; and an output kept when the run fails late."""
    case("output_missing_folder", margin(M, "--output", "{t}/nope/result.txt"),
         match=r"nope|folder|exist", category=OUTPUTS)
    case("output_onto_folder", margin(M, "--output", "{t}/report"),
         match=r"folder|director", category=OUTPUTS)
    case("output_symlink_to_dev_null", margin(M, "--output", "{t}/null.txt"),
         symlink("null.txt", "/dev/null"), match=LINKED, category=OUTPUTS)
    case("output_name_too_long", margin(M, "--output", "{t}/" + "x" * 300 + ".txt"),
         match=r"too long", category=OUTPUTS)
    case("output_kept_when_run_fails_late", margin(M, data="{t}/x.npy"),
         npy("x.npy", NAN_X), match=NONFINITE, category=OUTPUTS)
    # A link made like /dev/stdout, in the case's folder: the system's own would be
    # replaced by a regression run as root (rcert 0.3.0 did so).
    case("output_dev_stdout", margin(M, "--output", "{t}/stdout"),
         symlink("stdout", "/proc/self/fd/1"), match=r"stdout", category=OUTPUTS)
    case("output_onto_the_model", margin("{t}/m.safetensors", "--output",
                                         "{t}/m.safetensors"),
         lambda t: save_model(t, "m.safetensors"),
         match=r"is the model this run reads.*would destroy it", category=OUTPUTS)


def output_files_of_other_commands() -> None:
    """The outputs of plot, train, report, check and convert that they must not write."""
    case("plot_out_symlink_to_dev_null", plot("{t}/r.json", out="{t}/null.png"),
         chain(result_file("r.json", margin_doc), symlink("null.png", "/dev/null")),
         match=LINKED, category=OUTPUTS)
    case("train_out_symlink_to_dev_null", train("{t}/x.npy", out="{t}/null.safetensors"),
         chain(npy("x.npy", good_inputs(40)), symlink("null.safetensors", "/dev/null")),
         match=LINKED, category=OUTPUTS)
    case("report_out_is_a_file", ("report", "--model", M, "--data", GOOD, "--out",
                                   "{t}/result.txt", *FAST),
         match=r"is a file|not a folder|director", category=OUTPUTS)
    case("check_out_is_a_file", ("check", "{t}/rcert.toml", "--out", "{t}/result.txt",
                                 "--quiet"), toml_config(),
         match=r"is a file|not a folder|director", category=OUTPUTS)
    case("report_second_model_bad", report(M, "{t}/nope.safetensors"),
         match=r"nope\.safetensors|exist", category=OUTPUTS)
    case("convert_onto_itself", convert("{t}/m.safetensors", "{t}/m.safetensors"),
         lambda t: save_model(t, "m.safetensors"), match=r"itself", category=OUTPUTS)
    case("convert_onto_hard_link", convert("{t}/m.rcert", "{t}/same.rcert"),
         chain(legacy("m.rcert"), lambda t: os.link(t / "m.rcert", t / "same.rcert")),
         match=r"itself|same", category=OUTPUTS)
    case("convert_dst_symlink_to_dev_null", convert("{t}/m.rcert", "{t}/null.safetensors"),
         chain(legacy("m.rcert"), symlink("null.safetensors", "/dev/null")),
         match=LINKED, category=OUTPUTS)
    case("convert_src_torch_save", convert("{t}/sd.pt"), state_dict(),
         match=r"torch\.save|not an rcert|pickle", category=OUTPUTS)


def train_with_bad_input() -> None:
    """``rcert train`` on the test split, too little or unfit data, and bad options."""
    cat = "train with bad input"
    many = npy("x.npy", good_inputs(40))
    trains = [
        ("test_split", train("digits:test"), None, r"test split"),
        ("one_row", train("{t}/x.npy"), npy("x.npy", good_inputs(1)), r"too few|inputs"),
        ("vectors_conv", train("{t}/x.npy", "--arch", "conv"),
         npy("x.npy", np.random.default_rng(0).random((40, 64)).astype(np.float32)),
         r"conv|image|shape|channels"),
        ("epochs_zero", train("{t}/x.npy", "--epochs", "0"), many, r"epochs"),
        ("beta_zero", train("{t}/x.npy", "--beta", "0"), many, r"beta"),
        ("hidden_huge", train("{t}/x.npy", "--hidden", "100000000,100000000"), many,
         r"hidden|parameters|too (big|large)|widths"),
        ("data_out_of_range", train("{t}/x.npy"), npy("x.npy", good_inputs(40) * 255),
         r"range|rescale|bernoulli|\[0, 1\]"),
    ]
    for id, argv, setup, match in trains:
        case(f"train_{id}", argv, setup, match=match, category=cat)


def hierarchical_and_targeted() -> None:
    """Issue 10's bad inputs: impossible layers, free bits and MWS batches in ``rcert train``;
    lambda, targets and pairs in ``rcert attack --kind``."""
    cat = "hierarchical and targeted"
    many = npy("x.npy", good_inputs(40))
    targeted = ("attack", "--model", M, "--data", GOOD, "--kind", "kl", "--lambdas", "2",
                "--pairs", "2", "--max-iter", "2", "--quiet", "--output", "{t}/result.txt")
    cases = [
        ("train_layers_on_a_flat_family", train("{t}/x.npy", "--upper-dims", "4"), many,
         r"upper_dims only apply to the hierarchical families"),
        ("train_layer_of_size_zero",
         train("{t}/x.npy", "--family", "seatbelt", "--upper-dims", "4,0"), many,
         r"upper_dims"),
        ("train_free_bits_negative", train("{t}/x.npy", "--free-bits", "-1"), many,
         r"free_bits must be a finite number >= 0"),
        ("train_mws_batch_of_one",
         train("{t}/x.npy", "--family", "seatbelt", "--batch-size", "1"), many,
         r"batch_size must be at least 2 for family seatbelt"),
        ("attack_lambda_zero", (*targeted, "--lambda-values", "0"), None,
         r"every lambda must be a finite number > 0"),
        ("attack_lambda_negative", (*targeted, "--lambda-values=-2"), None,
         r"every lambda must be a finite number > 0"),
        ("attack_target_wrong_shape", (*targeted, "--targets", "{t}/t.npy"),
         npy("t.npy", np.zeros((3, 5), dtype=np.float32)), r"targets: .*input shape"),
        ("attack_pairs_from_one_input", (*targeted, "--limit", "1"), None,
         r"pairs need at least 2 inputs, but the data has 1"),
        ("attack_pairs_from_an_empty_target_file", (*targeted, "--targets", "{t}/t.npy"),
         npy("t.npy", np.zeros((0, 64), dtype=np.float32)), r"no rows|empty|0 "),
        ("attack_budget_with_a_targeted_kind", (*targeted, "--L", "1"), None,
         r"--L applies to --kind damage"),
    ]
    for id, argv, setup, match in cases:
        case(id, argv, setup, match=match, category=cat)


def control_characters() -> None:
    """Newlines in model paths and data specs."""
    cat = "control characters in names"
    case("newline_in_model_path", margin("{t}/a\nb.safetensors"), match=r"exist",
         category=cat)
    case("newline_in_existing_bad_model", margin("{t}/bad\nname.safetensors"),
         writes("bad\nname.safetensors", b"garbage" * 10),
         match=r"not a model file|not an rcert|unknown", category=cat)
    case("newline_in_data_spec", margin(M, data="digits:test\nfoo"),
         match=r"split|unexpected|item", category=cat)


#: Model cases that ``rcert inspect`` gets too: it reads models as the certifying commands do.
INSPECTED = ("pickle_lightning_ckpt_callbacks", "pickle_pythae_model_pt",
             "pickle_beta_tcvae_args", "ckpt_truncated_safetensors",
             "ckpt_tensor_bytes_flipped", "ckpt_legacy_frame_version_2",
             "ckpt_safetensors_without_rcert_metadata", "weights_nan_legacy",
             "recommended_r_nan_safetensors", "deep_json_safetensors_metadata",
             "safetensors_huge_header_length", "devzero_as_model", "dir_as_model")


def inspect_with_bad_models() -> None:
    """``inspect_<id>``: ``rcert inspect`` on the model of each case in :data:`INSPECTED`
    (so it runs after every other category)."""
    for c in [c for c in CASES if c.id in INSPECTED]:
        model = c.argv[c.argv.index("--model") + 1]
        extra = ("--arch", c.argv[c.argv.index("--arch") + 1]) if "--arch" in c.argv else ()
        case(f"inspect_{c.id}", ("inspect", model, *extra), c.setup, match=c.match,
             category="inspect with bad models")
