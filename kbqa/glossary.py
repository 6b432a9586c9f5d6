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
