"""The bad-input corpus of issue 9: "never a traceback, never a hang, never a silently wrong row".

Every :class:`Case` is one command line of ``rcert`` on an input that is wrong, and what it
must give: exit status ``expect_code`` (2: bad input) and one stderr line ``rcert: error: ...``
that says what is wrong (``match``, a regular expression searched case-insensitively in it).
``setup(t)`` makes the case's files in its own folder ``t`` (the working directory of the
run); in ``argv``, ``{t}`` stands for that folder and ``{m}`` for the shipped models' folder.

Before ``setup``, every case folder holds the outputs an earlier run left (:data:`KEPT`, with
the bytes :data:`OLD`) and two good inputs (``good.npy``); the commands below write to those
outputs (``--output {t}/result.txt``, ``--out {t}/fig.png``, ...), so a bad input must leave
them as they were. Hostile pickles run ``touch {t}/PWNED`` if they are ever unpickled.

The cases are built with torch and numpy in the test process, never by rcert itself, so a
broken reader cannot hide a broken writer. Files are small or sparse: size bombs *declare*
sizes they do not hold.

Where things are: :mod:`.core` holds :class:`Case`, :func:`~.core.case`, the constants, the
command lines and what the messages must say; :mod:`.make_files` makes data arrays, IDX and
CIFAR-10 files, special files, result documents and configs (and the session's
:data:`TEMPLATES`); :mod:`.make_models` makes models, checkpoints and hostile pickles. The
cases are in :mod:`.cases_models` (hostile pickles, NaN and inf, damaged checkpoints, foreign
models, deterministic autoencoders asked for what needs sigma), :mod:`.cases_files` (size
bombs, special files, deep documents, CIFAR-10, IDX, data files), :mod:`.cases_commands`
(baselines, plot results, options, check configs, output files, train, hierarchical and
targeted, control characters, inspect), :mod:`.cases_latent` (Lu & Chen's latent
attacks) and :mod:`.cases_adversarial` (latent adversarial training's options, and measure
and curve on a deterministic autoencoder), one function per category (two for the longest);
:data:`CATEGORIES` runs them in the corpus's order to fill :data:`CASES`.
"""

from __future__ import annotations

from . import cases_adversarial, cases_commands, cases_files, cases_latent, cases_models
from .core import CASES, KEPT, MARKER, MODELS, OLD, Case
from .make_files import TEMPLATES, good_inputs
from .make_models import Payload, hostile_pickle, torch_bytes

__all__ = ["CASES", "KEPT", "MARKER", "MODELS", "OLD", "TEMPLATES", "Case", "Payload",
           "good_inputs", "hostile_pickle", "torch_bytes"]

#: The functions that add the cases, in the corpus's order (each adds one category, or half
#: of one; the last repeats some model cases under ``rcert inspect``).
CATEGORIES = (
    cases_models.hostile_pickles_in_models,
    cases_models.hostile_pickles_elsewhere,
    cases_files.size_bombs,
    cases_files.special_files,
    cases_files.deep_documents,
    cases_commands.malformed_baselines,
    cases_commands.malformed_results_for_plot,
    cases_files.cifar_batches,
    cases_files.idx_files,
    cases_models.nan_and_inf,
    cases_commands.bad_options,
    cases_commands.check_configs,
    cases_models.damaged_checkpoints,
    cases_models.foreign_models,
    cases_files.data_files,
    cases_commands.output_files_of_margin,
    cases_commands.output_files_of_other_commands,
    cases_commands.train_with_bad_input,
    cases_commands.hierarchical_and_targeted,
    cases_commands.control_characters,
    cases_latent.latent_attacks,
    cases_commands.inspect_with_bad_models,
    cases_models.deterministic_autoencoders,
    cases_adversarial.adversarial_training,
)

for _add in CATEGORIES:
    _add()

_ids = [c.id for c in CASES]
assert len(_ids) == len(set(_ids)), sorted({i for i in _ids if _ids.count(i) > 1})
