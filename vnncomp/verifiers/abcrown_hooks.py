"""Run inside alpha-beta-CROWN's process (never imported by adcert): csv mode's counterexamples.

abCROWN writes every counterexample to one file (``attack.cex_path``), so in csv mode each instance's
overwrites the one before. adcert passes ``--adv_saver 'Customized("<this file>", "save_numbered")'``:
abCROWN's own saver writes the file as usual, then a copy is kept as ``<cex_path>.<row>``, the row of
the instance in the csv (abCROWN's ``example_idx``), which adcert reads back beside the results pickle.
Imports only what abCROWN itself has loaded by then.
"""

import shutil


def save_numbered(adv_input, adv_output, res_path):
    import arguments  # abCROWN's
    from attack.attack_utils import default_adv_saver

    default_adv_saver(adv_input, adv_output, res_path)
    shutil.copyfile(res_path, f"{res_path}.{int(arguments.Globals['example_idx'])}")
