"""Numba kernels of the batched EfficientZero tree search (used by ``agents/mcts.py``).

The trees of a batch of B roots live in preallocated arrays; node 0 is the root and the node
expanded by simulation ``k`` is node ``k + 1`` in every tree (each simulation adds exactly one
node per tree). Arrays (N = num_simulations + 1 nodes, A actions):

- ``children``     int32   [B, N, A]  node index of child (n, a), -1 where not expanded
- ``priors``       float64 [B, N, A]  prior P(n, a) (softmax of the policy logits of node n)
- ``visit_count``  int64   [B, N]     N(n), including the node's own expansion
- ``value_sum``    float64 [B, N]     sum of the values backed up through n (V(n) = sum / N(n))
- ``value_prefix`` float64 [B, N]     predicted value prefix of n (0 at the root)
- ``depth``        int64   [B, N]     search depth of n (root 0)
- ``is_reset``     bool    [B, N]     n's depth is a multiple of the value-prefix horizon: its
                                      reward-LSTM hidden was zeroed, so its children's edge
                                      reward is their own prefix (n's prefix counts as 0)
- ``minmax``       float64 [B, 2]     per-tree (min, max) of the Q values seen in backups

Edge reward and Q (EfficientZero, Ye et al. 2021, Sec. 4.2 "value prefix"):
``r(n, a) = prefix(c) - (0 if is_reset[n] else prefix(n))`` and
``Q(n, a) = r(n, a) + discount * V(c)`` for the child c of (n, a).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _normalize(q: float, lo: float, hi: float, delta_min: float) -> float:
    """Min-max normalised Q clipped to [0, 1]; 0 before any bound is known.

    The denominator is at least ``delta_min`` (EfficientZero's value_delta_max = 0.01) so that
    near-equal Q values are not blown up to the full [0, 1] range by dividing by ~0.
    """
    if hi < lo:
        return 0.0
    delta = hi - lo
    if delta < delta_min:
        delta = delta_min
    out = (q - lo) / delta
    if out < 0.0:
        return 0.0
    if out > 1.0:
        return 1.0
    return out


@njit(cache=True)
def select_leaves(
    children: np.ndarray,
    priors: np.ndarray,
    visit_count: np.ndarray,
    value_sum: np.ndarray,
    value_prefix: np.ndarray,
    is_reset: np.ndarray,
    minmax: np.ndarray,
    root_legal: np.ndarray,
    node_legal: np.ndarray,
    pb_c_base: float,
    pb_c_init: float,
    discount: float,
    delta_min: float,
    horizon: int,
    new_node: int,
    path: np.ndarray,
    path_len: np.ndarray,
    out_parent: np.ndarray,
    out_action: np.ndarray,
    out_flat: np.ndarray,
    out_reset_flat: np.ndarray,
) -> int:
    """Descend all B trees from the root by pUCT until an unexpanded edge is chosen.

    pUCT (MuZero, Schrittwieser et al. 2020, Appendix B):
    ``score = Qn(n, a) + P(n, a) * sqrt(N(n)) / (1 + N(c)) * (c1 + log((N(n) + c2 + 1) / c2))``
    with Qn the per-tree min-max normalised Q. An unvisited child is valued at the parent's
    mean Q (EfficientZero ``get_mean_q``: at the root the mean of the visited children's Q,
    deeper ``(parent's mean Q + sum of visited Q) / (visited + 1)``). At the root only actions
    with ``root_legal[b, a]`` are eligible, at every node only those with
    ``node_legal[b, a]`` (a game's legal ids in a shared action space; their priors are 0
    anyway, the check makes "never selected" hold even on score ties). Ties go to the lowest
    action index.

    Writes ``path[b, :path_len[b]]`` (root ... parent node), ``out_parent[b]`` (the node to
    expand from), ``out_action[b]`` (the action to expand), ``out_flat[b] = parent * B + b``
    (the parent's row in the latent / hidden pools) and, for the trees whose new node
    ``new_node`` lands at a depth that is a multiple of ``horizon``, that node's pool row
    ``new_node * B + b`` in ``out_reset_flat[:k]``. Returns k.
    """
    batch = children.shape[0]
    num_actions = children.shape[2]
    n_reset = 0
    for b in range(batch):
        lo = minmax[b, 0]
        hi = minmax[b, 1]
        node = 0
        plen = 1
        path[b, 0] = 0
        parent_q = 0.0
        is_root = True
        while True:
            base = 0.0 if is_reset[b, node] else value_prefix[b, node]
            total_q = 0.0
            n_visited = 0
            for a in range(num_actions):
                c = children[b, node, a]
                if c >= 0 and visit_count[b, c] > 0:
                    total_q += value_prefix[b, c] - base + discount * (
                        value_sum[b, c] / visit_count[b, c]
                    )
                    n_visited += 1
            if is_root and n_visited > 0:
                mean_q = total_q / n_visited
            else:
                mean_q = (parent_q + total_q) / (n_visited + 1)
            unvisited_score = _normalize(mean_q, lo, hi, delta_min)
            n_parent = float(visit_count[b, node])
            pb_c = (math.log((n_parent + pb_c_base + 1.0) / pb_c_base) + pb_c_init) * math.sqrt(
                n_parent
            )
            best = -np.inf
            best_a = -1
            for a in range(num_actions):
                if not node_legal[b, a] or (is_root and not root_legal[b, a]):
                    continue
                c = children[b, node, a]
                if c >= 0 and visit_count[b, c] > 0:
                    n_child = visit_count[b, c]
                    q = value_prefix[b, c] - base + discount * (value_sum[b, c] / n_child)
                    score = _normalize(q, lo, hi, delta_min) + pb_c * priors[b, node, a] / (
                        1.0 + n_child
                    )
                else:
                    score = unvisited_score + pb_c * priors[b, node, a]
                if score > best:
                    best = score
                    best_a = a
            c = children[b, node, best_a]
            if c < 0:
                out_parent[b] = node
                out_action[b] = best_a
                out_flat[b] = node * batch + b
                path_len[b] = plen
                if plen % horizon == 0:  # the new node's depth is plen
                    out_reset_flat[n_reset] = new_node * batch + b
                    n_reset += 1
                break
            node = c
            path[b, plen] = node
            plen += 1
            parent_q = mean_q
            is_root = False
    return n_reset


@njit(cache=True)
def expand_and_backup(
    new_node: int,
    children: np.ndarray,
    priors: np.ndarray,
    visit_count: np.ndarray,
    value_sum: np.ndarray,
    value_prefix: np.ndarray,
    is_reset: np.ndarray,
    depth: np.ndarray,
    minmax: np.ndarray,
    path: np.ndarray,
    path_len: np.ndarray,
    parent: np.ndarray,
    action: np.ndarray,
    horizon: int,
    new_value_prefix: np.ndarray,
    new_value: np.ndarray,
    new_logits: np.ndarray,
    node_legal: np.ndarray,
    discount: float,
) -> None:
    """Attach node ``new_node`` under (parent[b], action[b]) in every tree and back up.

    The new node gets prior softmax(new_logits[b]) over the ids with ``node_legal[b, a]``
    (0 elsewhere: the logits are sliced to the legal ids at every node), prefix
    new_value_prefix[b], depth path_len[b] (the path holds root ... parent) and
    is_reset = depth % horizon == 0.
    Backup (EfficientZero ``cbackpropagate``) walks from the leaf to the root: each node on
    the path gets ``N += 1`` and ``value_sum += G``, where G starts at the leaf's predicted
    value and becomes ``r(parent, node) + discount * G`` one level up; every
    non-root node's ``Q = r + discount * V`` updates the tree's min-max bounds.
    """
    batch = children.shape[0]
    num_actions = children.shape[2]
    for b in range(batch):
        p = parent[b]
        children[b, p, action[b]] = new_node
        value_prefix[b, new_node] = new_value_prefix[b]
        depth[b, new_node] = path_len[b]
        is_reset[b, new_node] = path_len[b] % horizon == 0
        m = -np.inf
        for a in range(num_actions):
            if node_legal[b, a] and new_logits[b, a] > m:
                m = new_logits[b, a]
        z = 0.0
        for a in range(num_actions):
            e = math.exp(new_logits[b, a] - m) if node_legal[b, a] else 0.0
            priors[b, new_node, a] = e
            z += e
        for a in range(num_actions):
            priors[b, new_node, a] /= z
        plen = path_len[b]
        path[b, plen] = new_node
        g = new_value[b]
        for i in range(plen, -1, -1):
            n = path[b, i]
            value_sum[b, n] += g
            visit_count[b, n] += 1
            if i == 0:
                break
            par = path[b, i - 1]
            r = value_prefix[b, n] - (0.0 if is_reset[b, par] else value_prefix[b, par])
            q = r + discount * value_sum[b, n] / visit_count[b, n]
            if q < minmax[b, 0]:
                minmax[b, 0] = q
            if q > minmax[b, 1]:
                minmax[b, 1] = q
            g = r + discount * g
