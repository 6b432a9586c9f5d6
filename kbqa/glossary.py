"""A small, hand-checked bilingual Kubernetes glossary.

It serves two purposes: the terms are added to jieba's dictionary so that
names such as ``kube-apiserver`` or 控制平面 stay whole tokens, and the pairs
let a query in one language be expanded with the other language's terms.
"""

from __future__ import annotations

# (zh terms, en terms): every entry is a term pair checked by hand.
PAIRS: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("控制平面",), ("control plane",)),
    (("数据平面",), ("data plane",)),
    (("控制平面节点", "控制节点", "主节点"), ("control plane node", "master node")),
    (("工作节点",), ("worker node",)),
    (("节点",), ("node",)),
    (("名字空间", "命名空间"), ("namespace",)),
    (("污点",), ("taint",)),
    (("容忍度", "容忍"), ("toleration",)),
    (("亲和性",), ("affinity",)),
    (("反亲和性",), ("anti-affinity",)),
    (("节点亲和性",), ("node affinity",)),
    (("调度器",), ("scheduler", "kube-scheduler")),
    (("控制器管理器",), ("controller manager", "kube-controller-manager")),
    (("云控制器管理器",), ("cloud controller manager", "cloud-controller-manager")),
    (("控制器",), ("controller",)),
    (("控制回路", "控制循环"), ("control loop",)),
    (("期望状态",), ("desired state",)),
    (("容器运行时",), ("container runtime",)),
    (("容器运行时接口",), ("container runtime interface", "cri")),
    (("容器",), ("container",)),
    (("镜像", "容器镜像"), ("image", "container image")),
    (("集群",), ("cluster",)),
    (("键值存储",), ("key-value store",)),
    (("领导者选举", "领导选举", "选主"), ("leader election",)),
    (("快照",), ("snapshot",)),
    (("备份",), ("backup",)),
    (("恢复", "还原"), ("restore",)),
    (("升级",), ("upgrade",)),
    (("服务",), ("service",)),
    (("服务发现",), ("service discovery",)),
    (("负载均衡",), ("load balancing", "load balancer")),
    (("网络代理",), ("network proxy",)),
    (("网络策略",), ("network policy", "networkpolicy")),
    (("网络插件",), ("network plugin", "cni")),
    (("持久卷",), ("persistent volume", "persistentvolume")),
    (("持久卷申领",), ("persistent volume claim", "persistentvolumeclaim")),
    (("存储类",), ("storage class", "storageclass")),
    (("卷",), ("volume",)),
    (("副本集",), ("replicaset",)),
    (("副本",), ("replica",)),
    (("守护进程集",), ("daemonset",)),
    (("有状态集",), ("statefulset",)),
    (("部署",), ("deployment",)),
    (("任务",), ("job",)),
    (("定时任务",), ("cronjob",)),
    (("配置映射",), ("configmap",)),
    (("密钥", "机密"), ("secret",)),
    (("服务账号", "服务账户"), ("service account", "serviceaccount")),
    (("存活探针",), ("liveness probe",)),
    (("就绪探针",), ("readiness probe",)),
    (("启动探针",), ("startup probe",)),
    (("探针",), ("probe",)),
    (("水平自动扩缩", "水平扩缩"), ("horizontal pod autoscaler", "horizontalpodautoscaler", "hpa")),
    (("自动扩缩", "弹性伸缩", "扩缩容"), ("autoscaling",)),
    (("租约",), ("lease",)),
    (("属主",), ("owner",)),
    (("附属", "依赖对象"), ("dependent",)),
    (("垃圾收集", "垃圾回收"), ("garbage collection",)),
    (("准入控制", "准入控制器"), ("admission control", "admission controller")),
    (("鉴权", "授权"), ("authorization",)),
    (("认证", "身份认证"), ("authentication",)),
    (("工作负载",), ("workload",)),
    (("生命周期",), ("lifecycle",)),
    (("阶段",), ("phase",)),
    (("高可用", "高可用性"), ("high availability", "highly available")),
    (("拓扑",), ("topology",)),
    (("交换分区",), ("swap",)),
    (("端口",), ("port",)),
    (("证书",), ("certificate",)),
    (("令牌",), ("token",)),
    (("插件",), ("add-on", "addon", "plugin")),
    (("标签",), ("label",)),
    (("选择算符", "选择器"), ("selector",)),
    (("注解",), ("annotation",)),
    (("资源配额",), ("resource quota", "resourcequota")),
    (("调度",), ("scheduling", "schedule")),
    (("驱逐",), ("eviction",)),
    (("滚动更新",), ("rolling update",)),
    (("回滚",), ("rollback", "roll back")),
    # General technical vocabulary the docs use in both languages.
    (("组件",), ("component",)),
    (("存储", "持久存储"), ("storage", "persistent storage")),
    (("网络",), ("network", "networking")),
    (("策略",), ("policy",)),
    (("隔离",), ("isolation", "isolate")),
    (("安装",), ("install", "installation")),
    (("初始化",), ("initialize", "init")),
    (("配置",), ("configure", "configuration")),
    (("命令",), ("command",)),
    (("命令行",), ("command line", "cli")),
    (("架构",), ("architecture",)),
    (("对象",), ("object",)),
    (("资源",), ("resource",)),
    (("请求",), ("request",)),
    (("限制",), ("limit",)),
    (("日志",), ("log", "logging")),
    (("监控",), ("monitoring",)),
    (("指标",), ("metrics",)),
    (("安全",), ("security",)),
    (("访问控制",), ("access control",)),
    (("权限",), ("permission",)),
    (("角色",), ("role",)),
    (("用户",), ("user",)),
    (("状态",), ("status", "state")),
    (("状况",), ("condition",)),
    (("容量",), ("capacity",)),
    (("地址",), ("address",)),
    (("应用",), ("application",)),
    (("有状态",), ("stateful",)),
    (("无状态",), ("stateless",)),
    (("批处理",), ("batch",)),
    (("扩缩", "扩容", "伸缩"), ("scale", "scaling")),
    (("更新",), ("update",)),
    (("删除",), ("delete",)),
    (("创建",), ("create",)),
    (("版本",), ("version",)),
    (("域名", "域名解析"), ("dns",)),
    (("外部",), ("external",)),
    (("堆叠",), ("stacked",)),
    (("关系",), ("relationship",)),
    (("数据",), ("data",)),
    (("镜像拉取",), ("image pull",)),
    (("排障", "故障排查", "排查"), ("troubleshooting", "troubleshoot")),
]

# Names that are the same in both languages and must stay whole.
NAMES: tuple[str, ...] = (
    "kube-apiserver", "kube-scheduler", "kube-controller-manager", "cloud-controller-manager",
    "kube-proxy", "kubelet", "kubectl", "kubeadm", "etcd", "etcdctl", "etcdutl", "containerd",
    "cri-o", "cri-dockerd", "crictl", "runc", "coredns", "kube-dns", "calico", "flannel",
    "cilium", "ipvs", "iptables", "nftables", "ipvsadm", "cgroupfs", "systemd", "kubeconfig",
    "nodeport", "clusterip", "loadbalancer", "externalname", "endpointslice", "ingress",
    "kube-system", "kube-public", "admin.conf", "pod", "pods",
)


def dictionary_terms() -> list[str]:
    """Every term jieba should keep whole (lower-cased, as the tokenizer sees text)."""
    terms: set[str] = set(NAMES)
    for zh, en in PAIRS:
        terms.update(zh)
        terms.update(t for t in en if "-" in t or "." in t)
    return sorted(t.lower() for t in terms)


# --- mining term pairs from the data ------------------------------------------

import re  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402

_PAREN = re.compile(r"([\u4e00-\u9fff]{1,12})\s*[（(]\s*([A-Za-z][A-Za-z0-9.\- ]{1,40}?)\s*[)）]")
_CJK_ONLY = re.compile(r"^[\u4e00-\u9fff]{2,8}$")
_EN_TERM = re.compile(r"^[a-z][a-z0-9.\-]*(?: [a-z][a-z0-9.\-]*){0,3}$")
_EN_STOP = {"the", "a", "an", "of", "and", "or", "to", "in", "for", "on", "with", "your", "you",
            "what", "how", "is", "are", "using", "use", "about", "from", "by", "its", "it"}


def _clean_en(term: str) -> str | None:
    words = [w for w in term.lower().replace("’", "'").split() if w not in _EN_STOP]
    t = " ".join(words).strip(" .-")
    return t if t and _EN_TERM.match(t) and len(t) >= 2 else None


_FUNCTION_CHARS = set("的和与及或在由为被把从对将是了也都就而并向以于让给用")
_FUNCTION_WORDS = {"通过", "包括", "能够", "可以", "使用", "以及", "或者", "并且", "这个", "一个", "这些",
                   "所有", "其中", "例如", "比如", "称为", "叫做", "即", "也", "都", "就"}


def _suffixes(zh: str, cut) -> list[tuple[str, int]]:
    """Candidate terms ending where the parenthesis starts: 1–3 trailing words.

    A candidate never starts with a one-character word (的, 和, 为 ...) or a
    function word, which is how a term's left edge shows in Chinese text.
    """
    words = [w for w in cut(zh) if w.strip()]
    out = []
    for n in range(1, min(3, len(words)) + 1):
        span = words[-n:]
        if span[0] in _FUNCTION_WORDS or span[0] in _FUNCTION_CHARS:
            break  # a function word is the term's left edge: nothing longer can be right
        cand = "".join(span)
        if len(cand) < 2:
            continue
        if _CJK_ONLY.match(cand) and len(cand) <= 6:
            out.append((cand, n))
    return out


def mine_parenthetical(zh_texts, cut) -> Counter:
    """(zh, en) pairs from the way Chinese docs gloss terms: 控制平面（Control Plane）.

    The characters before the parenthesis run on into the sentence, so each
    occurrence votes for its plausible cuts (up to three words, stopping at a
    function word); over the corpus the right cut gathers the votes, and a
    single occurrence takes the cut whose word count fits the English term.
    """
    votes: Counter = Counter()
    for text in zh_texts:
        for m in _PAREN.finditer(text):
            en = _clean_en(m.group(2))
            if not en:
                continue
            raw = m.group(2).strip()
            # Expected Chinese words: one per English word, one per acronym letter.
            want = len(raw) if raw.isupper() and len(raw) <= 5 else len(raw.split())
            for cand, n in _suffixes(m.group(1), cut):
                votes[(cand, en)] += 1.0 + 0.05 - 0.01 * abs(n - want)  # tie-break only
    return votes


def choose_pairs(votes: Counter) -> list[tuple[str, str]]:
    """For each English term, the Chinese cut with the most votes."""
    best: dict[str, tuple[float, str]] = {}
    for (zh, en), n in votes.items():
        if en not in best or n > best[en][0]:
            best[en] = (n, zh)
    return [(zh, en) for en, (_, zh) in best.items()]


def mine_headings(aligned: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Term pairs from short parallel headings and titles (same page, same anchor)."""
    pairs = []
    for zh, en in aligned:
        zh_ascii = {w.lower() for w in re.findall(r"[A-Za-z][A-Za-z0-9\-]*", zh)}
        en_words = [w for w in re.findall(r"[A-Za-z][A-Za-z0-9\-']*", en) if w.lower() not in zh_ascii]
        zh_rest = re.sub(r"[^\u4e00-\u9fff]", "", zh)
        en_rest = _clean_en(" ".join(en_words))
        if en_rest and _CJK_ONLY.match(zh_rest) and len(en_rest.split()) <= 3:
            pairs.append((zh_rest, en_rest))
    return pairs


def build_glossary(pairs) -> dict:
    """Both directions, core pairs first; stored in the index as glossary.json."""
    zh2en: dict[str, list[str]] = defaultdict(list)
    en2zh: dict[str, list[str]] = defaultdict(list)

    def add(zh: str, en: str) -> None:
        en = en.lower()
        if en not in zh2en[zh]:
            zh2en[zh].append(en)
        if zh not in en2zh[en]:
            en2zh[en].append(zh)

    for zhs, ens in PAIRS:
        for zh in zhs:
            for en in ens:
                add(zh, en)
    names = {n.lower() for n in NAMES}
    for zh, en in pairs:
        if en.lower() not in names:  # names read the same in both languages
            add(zh, en)
    return {"zh2en": dict(zh2en), "en2zh": dict(en2zh)}


def translate_terms(query: str, glossary: dict) -> list[str]:
    """The other language's terms for the glossary terms found in the query.

    Longest match first, so 节点亲和性 is not also read as 节点 + 亲和性.
    """
    out: list[str] = []
    if re.search(r"[\u4e00-\u9fff]", query):
        text = query
        for zh in sorted((k for k in glossary["zh2en"] if k in text), key=len, reverse=True):
            if zh in text:
                out.extend(glossary["zh2en"][zh])
                text = text.replace(zh, " ")
    else:
        # English terms match on word stems, so "taints" finds "taint".
        stems = glossary.get("_en_stems")
        if stems is None:  # once per loaded glossary, not per query
            stems = glossary["_en_stems"] = {" ".join(_stem(k)): k for k in glossary["en2zh"]}
        text = " " + " ".join(_stem(query)) + " "
        for key in sorted((k for k in stems if f" {k} " in text), key=len, reverse=True):
            if f" {key} " in text:
                out.extend(glossary["en2zh"][stems[key]])
                text = text.replace(f" {key} ", " ")
    return out


def _stem(text: str) -> list[str]:
    from kbqa.segment import _tokenizer

    stemmer = _tokenizer()[1]
    return [stemmer.stemWord(w) for w in re.findall(r"[a-z0-9][a-z0-9.\-]*", text.lower())]


# --- the names people type ----------------------------------------------------

# Kubernetes API kinds as the docs and kubectl write them. Written like this in
# a question (capitalised inside an English sentence, or in Latin letters inside
# a Chinese one), the word names the Kubernetes object, not its everyday sense:
# "What types of Service are there?", "Service 有哪几种类型？".
KINDS: frozenset[str] = frozenset("""
Pod Service Deployment ReplicaSet StatefulSet DaemonSet Job CronJob ConfigMap Secret
Namespace Node Ingress IngressClass PersistentVolume PersistentVolumeClaim StorageClass
ServiceAccount Role ClusterRole RoleBinding ClusterRoleBinding NetworkPolicy Endpoints
EndpointSlice HorizontalPodAutoscaler Lease LimitRange ResourceQuota PodDisruptionBudget
PriorityClass RuntimeClass CustomResourceDefinition Event VolumeSnapshot CSIDriver
""".split())
_KINDS_LOWER = frozenset(k.lower() for k in KINDS)

# kubectl's short names (`kubectl api-resources`) and the names people still
# use for what Kubernetes renamed, as the docs call them now. Only short names
# that are not also English words ("no", "po", "ing", "deploy" are left alone);
# two-letter ones only in capitals, as people write them (PV, not "pv" in prose).
SHORT_NAMES: dict[str, str] = {
    "svc": "Service", "sts": "StatefulSet", "CM": "ConfigMap", "pvc": "PersistentVolumeClaim",
    "hpa": "HorizontalPodAutoscaler", "netpol": "NetworkPolicy", "pdb": "PodDisruptionBudget",
    "crd": "CustomResourceDefinition", "crds": "CustomResourceDefinitions",
    "pvcs": "PersistentVolumeClaims", "PV": "PersistentVolume", "PVs": "PersistentVolumes",
    "DS": "DaemonSet", "RS": "ReplicaSet", "SA": "ServiceAccount", "SC": "StorageClass",
    "NS": "Namespace", "CJ": "CronJob", "EP": "Endpoints",
}
_SHORT = re.compile(r"(?<![A-Za-z0-9_.\-/])(" + "|".join(
    sorted(SHORT_NAMES, key=len, reverse=True)) + r")(?![A-Za-z0-9_\-/])", re.IGNORECASE)
# "master node", "master 节点", "Master节点": the control plane node (renamed in 1.20+).
_MASTER_NODE_EN = re.compile(r"\bmaster(\s+|-)node(s?)\b", re.IGNORECASE)
_MASTER_ZH = re.compile(r"(?<![A-Za-z])master\s*(节点|组件|上|服务器|机器)?(?![A-Za-z])", re.IGNORECASE)


def canonical_names(question: str) -> str:
    """The question with kubectl short names and legacy names written as the docs write them.

    "PV 和 PVC 是什么关系？" -> "PersistentVolume 和 PersistentVolumeClaim 是什么关系？";
    "master 节点上运行哪些组件？" -> "控制平面节点上运行哪些组件？". The docs never say
    PVC where a question does, so neither retrieval nor the answer would find it.
    Idempotent: what it writes contains no short name.
    """
    def short(m: re.Match) -> str:
        word = m.group(1)
        for key, name in SHORT_NAMES.items():
            if key == word or (len(key) > 2 and key.islower() and key == word.lower()):
                return name
        return word

    out = _SHORT.sub(short, question)
    out = _MASTER_NODE_EN.sub(lambda m: f"control plane node{m.group(2)}", out)
    if re.search(r"[\u4e00-\u9fff]", out):
        out = _MASTER_ZH.sub(lambda m: "控制平面" + ("节点" if m.group(1) in (None, "节点", "服务器", "机器")
                                                     else m.group(1)), out)
    return out


def kind_names(question: str) -> list[str]:
    """The Kubernetes kinds the question names as kinds (see KINDS), lower-cased."""
    cjk = bool(re.search(r"[\u4e00-\u9fff]", question))
    found = []
    for m in re.finditer(r"[A-Za-z]+", question):
        word = m.group()
        if cjk and word.lower() in _KINDS_LOWER:
            found.append(word.lower())
        elif word in KINDS:
            before = question[:m.start()].rstrip()
            # Not the first word of a sentence, where every word is capitalised.
            if before and before[-1] not in ".?!:;\"'“‘(":
                found.append(word.lower())
    return found
