#!/usr/bin/env python3
"""Train (or collect feature statistics for) a diffasr ASR model with ESPnet's trainer.

Same options as ``espnet2.bin.asr_train``, plus ``--model diffusion``,
``--decoder diffusion``, ``--spk_conditioner {film,prepend,none}`` and the optional
data name ``enroll_embed`` (kaldi_ark).  ``--collect_stats true`` runs the statistics
pass; ``--print_config`` shows every option with its default.
"""

from diffasr.espnet2.task import DiffASRTask


def get_parser():
    return DiffASRTask.get_parser()


def main(cmd=None):
    """Examples:

    python -m diffasr.bin.asr_train --config conf/train.yaml --token_list tokens.txt \
        --train_data_path_and_name_and_type dump/train/wav.scp,speech,sound ...
    """
    DiffASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
