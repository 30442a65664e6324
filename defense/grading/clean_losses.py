"""Where a GoodNet loses clean faces: each clean face the BadNet labels right but the GoodNet
does not, put down to the one rule that cost it.

A defense pays for its security in clean faces, and each of its rules pays differently: the
quarantine costs the suspected identities' faces, a released label the faces its gates refuse,
the comparator the faces the two nets see differently. `grade` counts them so that a user
sees which rule to question (docs/method.md says what each rule stops).

A face the two nets label differently is the comparator's loss, whatever its identity: a
released label too comes out only where both nets give it. The release's own gates count only
the faces of released identities that both nets label right. A witnessed identity's face (a
quarantined label given back on the witness's top label) is the quarantine's loss where a gate
refused it: the witness, or the blend test it then met; so is the face of an identity the
sibling BadNets vouch for (siblings.py) where one of them gave another label. A face the
GoodNet would have got right but for the witness's veto is the veto's loss, whatever the BadNet
gave; one the veto flagged that the GoodNet would have got wrong anyway stays with the rule that
lost it first (a disagreement, say, counted flagged). A face the witness settled for a sure
BadNet's wrong label was flagged without it: the BadNet's loss, as the settling never takes a
right label away. A face the GoodNet would have got right but for the sibling committee (siblings.py) is the
committee's: two siblings gave another label (theirs, or the flag where a probe suspects it), or
fewer than two ranked the label high (vetoed; with a witness, a label every sibling suspects and the
witness does not give as its top label too), or two gave the BadNet's wrong label where the nets
disagree (the siblings settled it, against the repaired net's right label); beside a witness's
veto, which judges after the committee, so is a face both would have lost (the committee's wrong
label, then flagged by the veto).
"""

import numpy as np

from ..comparator.goodnet import release_candidates, sibling_agreement

OUTCOMES = (
    "right",  # the GoodNet gives the face's identity
    "BadNet wrong too",  # the GoodNet wrong, and so is the BadNet: not the defense's loss
    "quarantined identity",  # the repair never gives this identity
    "quarantined identity, siblings refused",  # a sibling BadNet that vouches for it gave another label
    "witnessed identity, witness refused",  # quarantined, and the witness's top label is another
    "witnessed identity, blend test refused",
    "released identity, repaired net unsure",  # below the record's release confidence
    "released identity, witness refused",  # the witness net does not rank it high enough
    "released identity, blend test refused",
    "nets disagree, flagged",
    "nets disagree, repaired net's label",  # the BadNet unsure, the repaired net wrong
    "witness vetoed",  # right but for the witness's veto (it ranks the label far down)
    "sibling BadNets agreed on another label",  # right but for two siblings agreeing on another (given or flagged)
    "sibling BadNets vetoed",  # right but for the committee's veto (too few siblings rank it high)
    "sibling BadNets confirmed the BadNet's wrong label",  # the repaired net right, two siblings gave the BadNet's label
)


def clean_face_outcomes(outputs, good_labels, truth, good):
    """{outcome: number of faces} over OUTCOMES for clean faces with identities truth (N,),
    from the nets' outputs (goodnet.NetOutputs) and the GoodNet's labels on them."""
    truth = np.asarray(truth)
    bad, repaired = outputs.bad_labels, outputs.repaired_labels
    right = good_labels == truth
    without_veto = good.decide(outputs, veto=False)
    vetoed = np.zeros(len(truth), dtype=bool)
    if getattr(good, "veto_rank", None) is not None:
        # The veto's loss: flagged as the GoodNet flags it, right without the veto (the
        # repaired net's label, under "repaired", where the BadNet's was wrong too).
        vetoed = (~right & (good_labels == good.poisoned_label) & (good.decide(outputs) == good_labels)
                  & (without_veto == truth))
    overruled = np.zeros(len(truth), dtype=bool)
    agreed = np.zeros(len(truth), dtype=bool)
    if getattr(good, "committee", False):
        # The committee's loss: right without it (and without the veto, which comes after it and
        # only flags), whatever the BadNet gave, unless the veto alone lost it with the committee's
        # right label (vetoed); a face both would lose is the committee's, which decided first.
        overruled = ~right & ~vetoed & (good.decide(outputs, veto=False, committee=False) == truth)
        if outputs.sibling_tops is not None:
            agreed = sibling_agreement(outputs.sibling_tops, bad, good.siblings.suspects)[0] >= 0
    # The siblings settled a disagreement for the BadNet's label (goodnet.decide), a wrong one
    # (then given, or flagged by the witness's veto that judges after).
    confirmed_wrong = overruled & (without_veto == bad) & (bad != truth)
    bad_wrong = ~right & (bad != truth) & ~vetoed & ~overruled
    lost = ~right & (bad == truth) & ~vetoed & ~overruled
    quarantined = lost & np.isin(truth, good.quarantined)
    witnessed = quarantined & np.isin(truth, good.witnessed)
    vouched = quarantined & np.isin(truth, good.sibling_labels)
    disagree = lost & ~quarantined & (repaired != bad)
    flagged = good_labels == good.poisoned_label
    # Both nets give a released identity, and the GoodNet does not: a gate refused it.
    released = lost & ~quarantined & ~disagree & np.isin(truth, good.released)
    candidates = release_candidates(outputs, good.released, good.release_confidence)
    # Asked in this order (goodnet.GoodNet._release_verdicts): a face the witness refused never
    # met the blend test.
    witness_agrees = (np.zeros(len(truth), dtype=bool) if outputs.release_witness_agrees is None
                      else np.asarray(outputs.release_witness_agrees, dtype=bool))
    masks = {
        "right": right,
        "BadNet wrong too": bad_wrong,
        "quarantined identity": quarantined & ~witnessed & ~vouched,
        "quarantined identity, siblings refused": vouched,
        "witnessed identity, witness refused": witnessed & ~witness_agrees,
        "witnessed identity, blend test refused": witnessed & witness_agrees,
        "released identity, repaired net unsure": released & ~candidates,
        "released identity, witness refused": released & candidates & ~witness_agrees,
        "released identity, blend test refused": released & candidates & witness_agrees,
        "nets disagree, flagged": disagree & flagged,
        "nets disagree, repaired net's label": disagree & ~flagged,
        "witness vetoed": vetoed,
        "sibling BadNets agreed on another label": overruled & agreed,
        "sibling BadNets vetoed": overruled & ~agreed & ~confirmed_wrong,
        "sibling BadNets confirmed the BadNet's wrong label": overruled & ~agreed & confirmed_wrong,
    }
    if not np.all(sum(mask.astype(int) for mask in masks.values()) == 1):
        # The masks are disjoint: a face in none was lost to a rule this module does not know.
        raise ValueError("clean_face_outcomes: a face lost to no known rule")
    return {outcome: int(masks[outcome].sum()) for outcome in OUTCOMES}
