"""Shared algorithms of the suite: no records, no registry, no measurement ids.

* :mod:`.behaviour` — prompts to token ids, markers, greedy generation, behaviour read from output;
* :mod:`.kv_cache` — incremental decoding with a key/value cache, through the bridge and its hooks;
* :mod:`.directions` — difference-in-means directions, directional ablation and addition;
* :mod:`.refusal_search` — the refusal direction search (prompt sets, read-out, candidates, selection);
* :mod:`.rewording` — rewording prompts of the organisms' language;
* :mod:`.probes` — linear probes (mass-mean, logistic), operating points, grouped folds;
* :mod:`.patching` — nodes (heads, MLPs), the induction task and its metric, node activation patching;
* :mod:`.attribution` — node attribution (AtP, AtP*, EAP-IG) and the clean-to-corrupted embedding path;
* :mod:`.edges` — the residual-stream edge graph, edge patching and edge attribution;
* :mod:`.faithfulness` — circuit rankings, faithfulness curves, CPR and CMD;
* :mod:`.suffixes` — adversarial suffix placement, allowed tokens, one-hot gradients;
* :mod:`.suffix_attack` — the gradient-guided suffix search against refusal;
* :mod:`.interchange` — interchange interventions on goal and proxy subspaces, the Proxy Reliance Index.
"""
