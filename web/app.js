/* kbqa — web chat page (vanilla JS, no dependencies, CSP-friendly). */
(function () {
  'use strict';

  // ------------------------------------------------------------------
  // UI strings (both languages in one object)
  // ------------------------------------------------------------------
  var I18N = {
    en: {
      htmlLang: 'en',
      pageTitle: 'kbqa — Kubernetes Q&A',
      subtitle: 'Kubernetes Q&A in Chinese and English, with cited sources',
      skip: 'Skip to the question box',
      clear: 'Clear conversation',
      toggleText: '中文',
      toggleLang: 'zh-CN',
      toggleLabel: '切换到中文 (Switch to Chinese)',
      threadLabel: 'Conversation',
      questionLabel: 'Your question',
      placeholder: 'Ask a question about Kubernetes…',
      send: 'Send',
      hint: 'Enter to send · Shift+Enter for a new line',
      thinking: 'Thinking…',
      emptyTitle: 'Ask anything about Kubernetes',
      emptyIntro: 'kbqa answers questions from the Kubernetes documentation and cites the passages it used. Ask in Chinese or English, or try one of these:',
      examplesZh: 'In Chinese',
      examplesEn: 'In English',
      questionAria: 'Your question',
      answerAria: 'Answer',
      errorAria: 'Error',
      sources: 'Sources',
      show: 'Show',
      hide: 'Hide',
      showLabel: 'Show the full text of source {n}',
      hideLabel: 'Hide the full text of source {n}',
      openLink: 'Open original ↗',
      openLinkLabel: 'Open source {n} in a new tab',
      untitled: '(untitled)',
      langBadge: { zh: '中文', en: 'EN' },
      langName: { zh: 'Chinese', en: 'English' },
      took: 'Answered in {time}',
      ms: '{n} ms',
      s: '{n} s',
      notFound: 'No answer was found in the indexed documents.',
      networkError: 'Cannot reach the server. Check your connection and try again.',
      timeout: 'The request took too long and was cancelled. Please try again.',
      httpError: 'The server returned an error (HTTP {status}).',
      badResponse: 'The server sent a response that could not be read.',
      retry: 'Try again',
      copy: 'Copy',
      copied: 'Copied',
      copyFailed: 'Copy failed',
      copyLabel: 'Copy code to clipboard',
      citeTitle: 'Source {n}: {title}',
      statusOk: '{documents} documents · {chunks} chunks indexed',
      statusDown: 'Server unreachable',
      interrupted: 'The connection to the server was lost before the answer was complete. Please try again.',
      searchedFor: 'Searched for: {query}',
      suggestions: 'Topics the knowledge base does cover',
      feedbackQ: 'Was this answer helpful?',
      rateUp: 'Helpful',
      rateDown: 'Not helpful',
      commentLabel: 'Comment (optional)',
      commentPlaceholder: 'What was good, wrong or missing?',
      sendFeedback: 'Send feedback',
      cancel: 'Cancel',
      sending: 'Sending…',
      feedbackThanksUp: 'Thanks! You rated this answer helpful.',
      feedbackThanksDown: 'Thanks! You rated this answer not helpful.',
      feedbackError: 'Your feedback could not be sent: {message}',
      answering: 'Answer being written',
      examples: {
        zh: [
          'etcd 的作用是什么？',
          'kube-proxy 的 IPVS 模式和 iptables 模式有什么区别？',
          '如何用 kubeadm 安装集群？'
        ],
        en: [
          'What does kube-proxy do?',
          'How does a worker node join a kubeadm cluster?',
          'What is the difference between the control plane and the data plane?'
        ]
      }
    },
    zh: {
      htmlLang: 'zh-CN',
      pageTitle: 'kbqa — Kubernetes 问答',
      subtitle: '中英双语 Kubernetes 文档问答，答案附带出处',
      skip: '跳到提问框',
      clear: '清空对话',
      toggleText: 'EN',
      toggleLang: 'en',
      toggleLabel: 'Switch to English (切换到英文)',
      threadLabel: '对话',
      questionLabel: '你的问题',
      placeholder: '输入关于 Kubernetes 的问题…',
      send: '发送',
      hint: 'Enter 发送 · Shift+Enter 换行',
      thinking: '思考中…',
      emptyTitle: '有什么 Kubernetes 问题？',
      emptyIntro: 'kbqa 从 Kubernetes 文档中查找答案，并标注引用的原文段落。可以用中文或英文提问，也可以试试下面的例子：',
      examplesZh: '中文示例',
      examplesEn: '英文示例',
      questionAria: '你的问题',
      answerAria: '回答',
      errorAria: '错误',
      sources: '参考来源',
      show: '展开',
      hide: '收起',
      showLabel: '展开第 {n} 条来源的全文',
      hideLabel: '收起第 {n} 条来源的全文',
      openLink: '查看原文 ↗',
      openLinkLabel: '在新标签页中打开第 {n} 条来源',
      untitled: '（无标题）',
      langBadge: { zh: '中文', en: 'EN' },
      langName: { zh: '中文', en: '英文' },
      took: '用时 {time}',
      ms: '{n} 毫秒',
      s: '{n} 秒',
      notFound: '在已索引的文档中没有找到答案。',
      networkError: '无法连接服务器，请检查网络后重试。',
      timeout: '请求时间过长，已取消，请重试。',
      httpError: '服务器返回错误（HTTP {status}）。',
      badResponse: '服务器返回的内容无法解析。',
      retry: '重试',
      copy: '复制',
      copied: '已复制',
      copyFailed: '复制失败',
      copyLabel: '复制代码',
      citeTitle: '来源 {n}：{title}',
      statusOk: '已索引 {documents} 篇文档 · {chunks} 个片段',
      statusDown: '服务器不可用',
      interrupted: '回答尚未完成时与服务器的连接中断了，请重试。',
      searchedFor: '实际检索：{query}',
      suggestions: '知识库涵盖的相关主题',
      feedbackQ: '这个回答有帮助吗？',
      rateUp: '有帮助',
      rateDown: '没有帮助',
      commentLabel: '补充意见（可选）',
      commentPlaceholder: '哪里好，哪里不对或缺了什么？',
      sendFeedback: '提交反馈',
      cancel: '取消',
      sending: '正在提交…',
      feedbackThanksUp: '谢谢！你认为这个回答有帮助。',
      feedbackThanksDown: '谢谢！你认为这个回答没有帮助。',
      feedbackError: '反馈未能提交：{message}',
      answering: '正在生成回答',
      examples: null // same examples as English (they are bilingual already)
    }
  };
  I18N.zh.examples = I18N.en.examples;

  // ------------------------------------------------------------------
  // Constants & state
  // ------------------------------------------------------------------
  var API_QUERY = '/api/query';
  var API_STREAM = '/api/query/stream';
  var API_HEALTH = '/api/health';
  var API_FEEDBACK = '/api/feedback';
  var TOP_K = 5;
  // Follow-ups: the last turns go along as `history` (the API takes at most 10);
  // long answers are clipped, only their topic matters for resolving "it".
  var MAX_HISTORY = 10;
  var HISTORY_ANSWER_CHARS = 1500;
  var MAX_FEEDBACK_ANSWER_CHARS = 20000;
  var REQUEST_TIMEOUT_MS = 120000;
  var SNIPPET_CHARS = 200;
  var MAX_TURNS = 100;
  var KEY_THREAD = 'kbqa.thread.v1';
  var KEY_LANG = 'kbqa.lang';

  var state = {
    lang: 'en',
    turns: [],
    nextId: 1,
    busy: false,
    controller: null,
    generation: 0,
    streamAvailable: true, // cleared when the server has no /api/query/stream
    health: null // null = unknown, false = down, object = ok
  };

  var els = {};

  // ------------------------------------------------------------------
  // Small helpers
  // ------------------------------------------------------------------
  function t(key) {
    var dict = I18N[state.lang] || I18N.en;
    return Object.prototype.hasOwnProperty.call(dict, key) ? dict[key] : I18N.en[key];
  }

  function fmt(template, vars) {
    return String(template).replace(/\{(\w+)\}/g, function (m, name) {
      return Object.prototype.hasOwnProperty.call(vars, name) ? String(vars[name]) : m;
    });
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }

  function str(v) {
    return v == null ? '' : String(v);
  }

  function looksChinese(text) {
    return /[\u3400-\u9fff\uf900-\ufaff]/.test(text);
  }

  function htmlLangFor(code) {
    return code === 'zh' ? 'zh-CN' : (code === 'en' ? 'en' : '');
  }

  function prefersReducedMotion() {
    return !!(window.matchMedia && window.matchMedia('(prefers-reduced-motion: reduce)').matches);
  }

  function formatNumber(n) {
    try {
      return new Intl.NumberFormat(t('htmlLang')).format(n);
    } catch (e) {
      return String(n);
    }
  }

  function formatDuration(ms) {
    if (ms < 1000) return fmt(t('ms'), { n: formatNumber(Math.max(0, Math.round(ms))) });
    return fmt(t('s'), { n: (ms / 1000).toFixed(ms < 10000 ? 2 : 1) });
  }

  function safeHttpUrl(value) {
    if (typeof value !== 'string') return null;
    var s = value.trim();
    // Absolute http(s) links, or a path on this server (our own articles).
    var local = /^\/(?!\/)/.test(s);
    if (!s || (!local && !/^https?:\/\//i.test(s))) return null;
    try {
      var u = new URL(s, window.location.origin);
      if (u.protocol === 'http:' || u.protocol === 'https:') return u.href;
    } catch (e) { /* invalid URL */ }
    return null;
  }

  // ------------------------------------------------------------------
  // Question terms, highlighted in the source cards
  // ------------------------------------------------------------------
  var EN_STOP = {};
  ('a an and are as at be by can could did do does for from how i if in into is it its ' +
   'me my of on or should that the their them then there these this those to use used ' +
   'using was we what when where which who why will with would you your between ' +
   'difference differences vs versus about explain tell').split(' ').forEach(function (w) { EN_STOP[w] = 1; });
  var ZH_STOP = {};
  ('什么 是什么 怎么 怎样 如何 为什么 哪些 哪个 什么样 是否 可以 能否 有什么 有哪些 ' +
   '之间 区别 不同 一下 请问 我们 你们 他们 这个 那个 以及 还有 的话 吗 呢 的 了 和 与 ' +
   '是 在 有 我 你 用 怎么样 作用').split(' ').forEach(function (w) { ZH_STOP[w] = 1; });

  function segmentChinese(run) {
    if (typeof Intl === 'object' && typeof Intl.Segmenter === 'function') {
      try {
        var seg = new Intl.Segmenter('zh', { granularity: 'word' });
        return Array.from(seg.segment(run), function (s) { return s.segment; });
      } catch (e) { /* fall through to bigrams */ }
    }
    var out = [];
    for (var i = 0; i + 2 <= run.length; i++) out.push(run.slice(i, i + 2));
    return out;
  }

  // The words of a question worth finding in a passage: names and content
  // words in English, dictionary words (Intl.Segmenter) in Chinese.
  function questionTerms(text) {
    var seen = {};
    var source = str(text);
    (source.toLowerCase().match(/[a-z0-9][a-z0-9._-]*[a-z0-9]|[a-z0-9]/g) || []).forEach(function (w) {
      if (w.length >= 2 && !EN_STOP[w]) seen[w] = 1;
    });
    (source.match(/[\u3400-\u9fff\uf900-\ufaff]+/g) || []).forEach(function (run) {
      segmentChinese(run).forEach(function (w) {
        if (w.length >= 2 && !ZH_STOP[w]) seen[w] = 1;
      });
    });
    return Object.keys(seen).sort(function (a, b) { return b.length - a.length; }).slice(0, 40);
  }

  function termsRegex(terms) {
    if (!terms || !terms.length) return null;
    var parts = terms.map(function (w) {
      var esc = w.replace(/[.*+?^${}()|[\]\\\-]/g, '\\$&');
      // English words match at a word start ("node" finds "nodes").
      return /^[a-z0-9]/.test(w) ? '(?<![A-Za-z0-9])' + esc : esc;
    });
    try {
      return new RegExp(parts.join('|'), 'gi');
    } catch (e) {
      return null;
    }
  }

  // Append `text` to `parent`, wrapping the terms in <mark> (text nodes only,
  // never HTML: the passage text is data, not markup).
  function appendHighlighted(parent, text, re) {
    if (!re) {
      parent.appendChild(document.createTextNode(text));
      return;
    }
    re.lastIndex = 0;
    var last = 0;
    var m;
    while ((m = re.exec(text)) !== null) {
      if (!m[0]) { re.lastIndex++; continue; }
      if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      parent.appendChild(el('mark', 'term', m[0]));
      last = m.index + m[0].length;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  // A short window of the passage, starting near the first question term.
  function snippetOf(text, re) {
    var flat = text.replace(/\s+/g, ' ').trim();
    var chars = Array.from(flat);
    if (chars.length <= SNIPPET_CHARS) return flat;
    var start = 0;
    if (re) {
      re.lastIndex = 0;
      var m = re.exec(flat);
      if (m) {
        var at = Array.from(flat.slice(0, m.index)).length;
        if (at > SNIPPET_CHARS / 2) start = Math.min(at - 40, chars.length - SNIPPET_CHARS);
      }
    }
    var piece = chars.slice(start, start + SNIPPET_CHARS).join('');
    if (start > 0) piece = '…' + piece.replace(/^\S{0,15}\s/, '');
    if (start + SNIPPET_CHARS < chars.length) {
      piece = piece.replace(/\s+\S*$/, function (m) {
        // avoid cutting an English word in half when a space is near the end
        return m.length < 20 ? '' : m;
      }) + '…';
    }
    return piece;
  }

  // ------------------------------------------------------------------
  // Storage
  // ------------------------------------------------------------------
  function storageGet(key) {
    try { return window.localStorage.getItem(key); } catch (e) { return null; }
  }

  function storageSet(key, value) {
    try { window.localStorage.setItem(key, value); return true; } catch (e) { return false; }
  }

  function storageRemove(key) {
    try { window.localStorage.removeItem(key); } catch (e) { /* ignore */ }
  }

  function isValidTurn(turn) {
    if (!turn || typeof turn !== 'object' || typeof turn.id !== 'number') return false;
    if (turn.role === 'question') return typeof turn.text === 'string';
    if (turn.role === 'answer') return !!turn.data && typeof turn.data === 'object';
    if (turn.role === 'error') return typeof turn.kind === 'string';
    return false;
  }

  function loadThread() {
    var raw = storageGet(KEY_THREAD);
    if (!raw) return;
    try {
      var parsed = JSON.parse(raw);
      var turns = Array.isArray(parsed) ? parsed : (parsed && parsed.turns);
      if (!Array.isArray(turns)) return;
      state.turns = turns.filter(isValidTurn).map(function (turn) {
        if (turn.role === 'answer') turn.data = normalizeResponse(turn.data);
        return turn;
      });
      state.nextId = state.turns.reduce(function (max, turn) {
        return Math.max(max, turn.id + 1);
      }, 1);
    } catch (e) {
      state.turns = [];
    }
  }

  function saveThread() {
    if (!state.turns.length) {
      storageRemove(KEY_THREAD);
      return;
    }
    var turns = state.turns.slice(-MAX_TURNS);
    // If the quota is exceeded, drop the oldest turns until it fits.
    while (turns.length) {
      if (storageSet(KEY_THREAD, JSON.stringify({ version: 1, turns: turns }))) return;
      turns = turns.slice(Math.min(2, turns.length));
    }
    storageRemove(KEY_THREAD);
  }

  // ------------------------------------------------------------------
  // Language
  // ------------------------------------------------------------------
  function detectLang() {
    var saved = storageGet(KEY_LANG);
    if (saved === 'zh' || saved === 'en') return saved;
    var nav = (navigator.languages && navigator.languages[0]) || navigator.language || '';
    return /^zh/i.test(nav) ? 'zh' : 'en';
  }

  function applyStaticStrings() {
    document.documentElement.lang = t('htmlLang');
    document.title = t('pageTitle');

    var nodes = document.querySelectorAll('[data-i18n]');
    for (var i = 0; i < nodes.length; i++) {
      nodes[i].textContent = t(nodes[i].getAttribute('data-i18n'));
    }
    nodes = document.querySelectorAll('[data-i18n-placeholder]');
    for (i = 0; i < nodes.length; i++) {
      nodes[i].setAttribute('placeholder', t(nodes[i].getAttribute('data-i18n-placeholder')));
    }
    nodes = document.querySelectorAll('[data-i18n-aria-label]');
    for (i = 0; i < nodes.length; i++) {
      nodes[i].setAttribute('aria-label', t(nodes[i].getAttribute('data-i18n-aria-label')));
    }

    els.langToggle.textContent = t('toggleText');
    els.langToggle.setAttribute('lang', t('toggleLang'));
    els.langToggle.setAttribute('aria-label', t('toggleLabel'));
    els.langToggle.title = t('toggleLabel');

    renderStatus();
  }

  function setLang(lang) {
    state.lang = lang === 'zh' ? 'zh' : 'en';
    storageSet(KEY_LANG, state.lang);
    applyStaticStrings();
    var top = els.scroller.scrollTop;
    renderThread();
    els.scroller.scrollTop = top;
  }

  // ------------------------------------------------------------------
  // Defensive clean-up of server HTML (already sanitised server-side;
  // this is only a second line of defence).
  // ------------------------------------------------------------------
  var DROP_TAGS = {
    script: 1, style: 1, iframe: 1, frame: 1, frameset: 1, object: 1, embed: 1,
    link: 1, meta: 1, base: 1, form: 1, input: 1, button: 1, textarea: 1,
    select: 1, option: 1, template: 1, svg: 1, math: 1, noscript: 1, applet: 1
  };
  var URL_ATTRS = { href: 1, src: 1, 'xlink:href': 1, action: 1, formaction: 1, poster: 1, background: 1, cite: 1 };

  function isSafeUrlAttr(value) {
    var v = String(value).replace(/[\u0000-\u0020\u007f-\u00a0]/g, '');
    var m = /^([a-z][a-z0-9+.\-]*):/i.exec(v);
    if (!m) return true; // relative URL or fragment
    var scheme = m[1].toLowerCase();
    return scheme === 'http' || scheme === 'https' || scheme === 'mailto';
  }

  function cleanFragment(root) {
    var all = Array.prototype.slice.call(root.querySelectorAll('*'));
    all.forEach(function (node) {
      var tag = (node.localName || '').toLowerCase();
      if (DROP_TAGS[tag]) {
        node.remove();
        return;
      }
      Array.prototype.slice.call(node.attributes).forEach(function (attr) {
        var name = attr.name.toLowerCase();
        if (name.indexOf('on') === 0 || name === 'style' || name === 'srcdoc' ||
            name === 'id' || name === 'name' || name === 'srcset' ||
            (URL_ATTRS[name] && !isSafeUrlAttr(attr.value))) {
          node.removeAttribute(attr.name);
        }
      });
      if (tag === 'a' && /^https?:/i.test(node.getAttribute('href') || '')) {
        node.setAttribute('target', '_blank');
        node.setAttribute('rel', 'noopener noreferrer');
      }
    });
  }

  // ------------------------------------------------------------------
  // Response normalisation
  // ------------------------------------------------------------------
  function normalizePassage(p) {
    p = p && typeof p === 'object' ? p : {};
    var heading = Array.isArray(p.heading) ? p.heading.map(str).join(' > ') : str(p.heading);
    var score = Number(p.score);
    return {
      id: str(p.id),
      source: str(p.source),
      collection: str(p.collection),
      lang: str(p.lang),
      title: str(p.title),
      heading: heading,
      text: str(p.text),
      score: isFinite(score) ? score : null,
      url: typeof p.url === 'string' ? p.url : null
    };
  }

  function normalizeResponse(d) {
    d = d && typeof d === 'object' ? d : {};
    var took = Number(d.took_ms);
    var answer = str(d.answer);
    return {
      answer: answer,
      answer_html: str(d.answer_html),
      found: typeof d.found === 'boolean' ? d.found : !!answer,
      lang: str(d.lang),
      question_type: str(d.question_type),
      searched_query: str(d.searched_query),
      mode: str(d.mode),
      mode_note: typeof d.mode_note === 'string' ? d.mode_note : '',
      passages: Array.isArray(d.passages) ? d.passages.map(normalizePassage) : [],
      suggestions: Array.isArray(d.suggestions) ? d.suggestions.filter(function (x) {
        return x && typeof x === 'object';
      }).map(function (x) { return { title: str(x.title), url: str(x.url) }; }) : [],
      took_ms: d.took_ms != null && isFinite(took) ? took : null
    };
  }

  // ------------------------------------------------------------------
  // Rendering
  // ------------------------------------------------------------------
  function renderQuestion(turn) {
    var article = el('article', 'turn question');
    article.id = 'turn-' + turn.id;
    article.setAttribute('aria-label', t('questionAria'));
    var bubble = el('div', 'bubble', turn.text);
    bubble.setAttribute('lang', looksChinese(turn.text) ? 'zh-CN' : 'en');
    article.appendChild(bubble);
    return article;
  }

  function addCopyButtons(container) {
    // Code blocks and tables scroll sideways on small screens: keyboard users
    // must be able to focus them to scroll.
    Array.prototype.forEach.call(container.querySelectorAll('table'), function (table) {
      table.tabIndex = 0;
    });
    var pres = container.querySelectorAll('pre');
    Array.prototype.forEach.call(pres, function (pre) {
      pre.tabIndex = 0;
      var wrap = el('div', 'code-wrap');
      pre.parentNode.insertBefore(wrap, pre);
      wrap.appendChild(pre);
      var btn = el('button', 'copy', t('copy'));
      btn.type = 'button';
      btn.setAttribute('aria-label', t('copyLabel'));
      btn.title = t('copyLabel');
      wrap.appendChild(btn);
    });
  }

  function linkCitations(container, turnId, passages) {
    var count = passages.length;
    if (!count) return;
    var walker = document.createTreeWalker(container, NodeFilter.SHOW_TEXT, {
      acceptNode: function (node) {
        if (!/\[\d+\]/.test(node.nodeValue)) return NodeFilter.FILTER_REJECT;
        var parent = node.parentElement;
        if (parent && parent.closest('a, code, pre, kbd, samp')) return NodeFilter.FILTER_REJECT;
        return NodeFilter.FILTER_ACCEPT;
      }
    });
    var targets = [];
    while (walker.nextNode()) targets.push(walker.currentNode);

    targets.forEach(function (node) {
      var text = node.nodeValue;
      var re = /\[(\d+)\]/g;
      var frag = document.createDocumentFragment();
      var last = 0;
      var changed = false;
      var m;
      while ((m = re.exec(text)) !== null) {
        var n = parseInt(m[1], 10);
        if (!(n >= 1 && n <= count)) continue;
        if (m.index > last) frag.appendChild(document.createTextNode(text.slice(last, m.index)));
        var a = document.createElement('a');
        a.className = 'cite';
        a.href = '#src-' + turnId + '-' + n;
        a.textContent = '[' + n + ']';
        a.setAttribute('data-turn', String(turnId));
        a.setAttribute('data-n', String(n));
        var p = passages[n - 1];
        a.title = fmt(t('citeTitle'), { n: n, title: p.title || p.heading || p.source || t('untitled') });
        frag.appendChild(a);
        last = m.index + m[0].length;
        changed = true;
      }
      if (!changed) return;
      if (last < text.length) frag.appendChild(document.createTextNode(text.slice(last)));
      node.parentNode.replaceChild(frag, node);
    });
  }

  function displayUrl(href) {
    try {
      var u = new URL(href);
      var shown = (u.origin === window.location.origin ? u.pathname : u.host + u.pathname)
        .replace(/\/$/, '') + u.hash;
      try { shown = decodeURIComponent(shown); } catch (e) { /* keep it encoded */ }
      return shown;
    } catch (e) {
      return href;
    }
  }

  function renderSource(turnId, passage, n, re) {
    var li = el('li', 'source');
    li.id = 'src-' + turnId + '-' + n;
    li.tabIndex = -1;
    if (passage.id) li.setAttribute('data-passage-id', passage.id);
    if (passage.lang) {
      var plang = htmlLangFor(passage.lang);
      if (plang) li.setAttribute('lang', plang);
    }

    var head = el('div', 'source-head');
    head.appendChild(el('span', 'source-num', '[' + n + ']'));
    head.appendChild(el('span', 'source-title', passage.title || passage.source || t('untitled')));
    if (passage.lang) {
      var badges = t('langBadge');
      var names = t('langName');
      var badge = el('span', 'badge lang-badge lang-' + passage.lang.replace(/[^a-z0-9-]/gi, ''),
        badges[passage.lang] || passage.lang.toUpperCase());
      if (names[passage.lang]) badge.title = names[passage.lang];
      head.appendChild(badge);
    }
    li.appendChild(head);

    if (passage.heading) li.appendChild(el('div', 'source-heading', passage.heading));
    if (passage.source) li.appendChild(el('div', 'source-path', passage.source));

    var fullId = li.id + '-full';
    var snippet = el('p', 'source-snippet');
    appendHighlighted(snippet, snippetOf(passage.text, re), re);
    var full = el('div', 'source-full');
    appendHighlighted(full, passage.text, re);
    full.id = fullId;
    full.hidden = true;
    if (passage.text) {
      li.appendChild(snippet);
      li.appendChild(full);
    }

    var actions = el('div', 'source-actions');
    if (passage.text) {
      var toggle = el('button', 'link-btn toggle', t('show'));
      toggle.type = 'button';
      toggle.setAttribute('aria-expanded', 'false');
      toggle.setAttribute('aria-controls', fullId);
      toggle.setAttribute('aria-label', fmt(t('showLabel'), { n: n }));
      toggle.setAttribute('data-n', String(n));
      actions.appendChild(toggle);
    }
    var href = safeHttpUrl(passage.url);
    if (href) {
      // The canonical link, spelled out: readers see where the passage lives.
      var link = el('a', 'source-link', displayUrl(href) + ' ↗');
      link.href = href;
      link.target = '_blank';
      link.rel = 'noopener noreferrer';
      link.title = fmt(t('openLinkLabel'), { n: n });
      actions.appendChild(link);
    }
    if (actions.childNodes.length) li.appendChild(actions);
    return li;
  }

  function renderAnswer(turn) {
    var data = turn.data;
    var article = el('article', 'turn answer' + (data.found ? '' : ' notice'));
    article.id = 'turn-' + turn.id;
    article.setAttribute('aria-label', t('answerAria'));
    var bubble = el('div', 'bubble');
    var body = el('div', 'answer-body');
    var alang = htmlLangFor(data.lang);
    if (alang) body.setAttribute('lang', alang);

    if (data.answer_html) {
      // Server-sanitised HTML; parsed in an inert <template> and cleaned again.
      var tpl = document.createElement('template');
      tpl.innerHTML = data.answer_html;
      cleanFragment(tpl.content);
      body.appendChild(tpl.content);
    } else if (data.answer) {
      body.appendChild(el('p', 'answer-plain', data.answer));
    } else if (!data.found) {
      body.appendChild(el('p', null, t('notFound')));
    }

    addCopyButtons(body);
    linkCitations(body, turn.id, data.passages);
    bubble.appendChild(body);

    if (data.passages.length) {
      var section = el('section', 'sources');
      var titleId = 'sources-title-' + turn.id;
      var title = el('h2', 'sources-title', t('sources'));
      title.id = titleId;
      section.setAttribute('aria-labelledby', titleId);
      section.appendChild(title);
      var list = el('ol', 'source-list');
      var re = termsRegex(questionTerms(str(turn.question) + ' ' + data.searched_query));
      data.passages.forEach(function (passage, i) {
        list.appendChild(renderSource(turn.id, passage, i + 1, re));
      });
      section.appendChild(list);
      bubble.appendChild(section);
    }

    // Nearby topics, unless the answer's text already links them.
    var linked = {};
    Array.prototype.forEach.call(body.querySelectorAll('a[href]'), function (a) { linked[a.href] = 1; });
    var links = data.suggestions.map(function (sg) {
      return { title: sg.title, href: safeHttpUrl(sg.url) };
    }).filter(function (sg) { return sg.href && sg.title && !linked[sg.href]; });
    if (links.length) {
      var sugg = el('section', 'suggestions');
      var sugTitleId = 'suggestions-title-' + turn.id;
      var sugTitle = el('h2', 'sources-title', t('suggestions'));
      sugTitle.id = sugTitleId;
      sugg.setAttribute('aria-labelledby', sugTitleId);
      sugg.appendChild(sugTitle);
      var sugList = el('ul', 'suggestion-list');
      links.forEach(function (sg) {
        var li = el('li');
        var a = el('a', 'suggestion', sg.title);
        a.href = sg.href;
        a.target = '_blank';
        a.rel = 'noopener noreferrer';
        li.appendChild(a);
        sugList.appendChild(li);
      });
      sugg.appendChild(sugList);
      bubble.appendChild(sugg);
    }

    var metaParts = [];
    // A follow-up is searched with its topic: show what was actually searched.
    if (data.searched_query && normalizeQ(data.searched_query) !== normalizeQ(turn.question)) {
      metaParts.push(fmt(t('searchedFor'), { query: data.searched_query }));
    }
    if (data.took_ms != null) metaParts.push(fmt(t('took'), { time: formatDuration(data.took_ms) }));
    if (data.mode_note) metaParts.push(data.mode_note);
    if (metaParts.length) bubble.appendChild(el('p', 'meta took', metaParts.join(' · ')));

    if (turn.question) bubble.appendChild(renderFeedback(turn));

    article.appendChild(bubble);
    return article;
  }

  function normalizeQ(text) {
    return str(text).replace(/\s+/g, ' ').trim().toLowerCase();
  }

  // 👍 / 👎 with an optional comment. Sent feedback is remembered in the turn,
  // so a reload shows it as given rather than asking again.
  function renderFeedback(turn) {
    var box = el('div', 'feedback');
    box.setAttribute('data-turn', String(turn.id));
    var sent = turn.feedback && turn.feedback.id ? turn.feedback : null;
    if (sent) {
      box.appendChild(el('p', 'feedback-done', t(sent.rating === 'up' ? 'feedbackThanksUp' : 'feedbackThanksDown')));
      return box;
    }
    var row = el('div', 'feedback-row');
    var qid = 'fbq-' + turn.id;
    var q = el('span', 'feedback-q', t('feedbackQ'));
    q.id = qid;
    row.appendChild(q);
    var group = el('div', 'feedback-buttons');
    group.setAttribute('role', 'group');
    group.setAttribute('aria-labelledby', qid);
    [['up', '👍', 'rateUp'], ['down', '👎', 'rateDown']].forEach(function (r) {
      var btn = el('button', 'btn btn-ghost rate rate-' + r[0]);
      btn.type = 'button';
      btn.setAttribute('data-rating', r[0]);
      btn.setAttribute('aria-pressed', 'false');
      btn.appendChild(el('span', null, r[1])).setAttribute('aria-hidden', 'true');
      btn.appendChild(el('span', 'rate-label', t(r[2])));
      group.appendChild(btn);
    });
    row.appendChild(group);
    box.appendChild(row);

    var form = el('form', 'feedback-form');
    form.hidden = true;
    form.noValidate = true;
    var cid = 'fbc-' + turn.id;
    var label = el('label', 'feedback-label', t('commentLabel'));
    label.htmlFor = cid;
    var ta = el('textarea', 'feedback-comment');
    ta.id = cid;
    ta.rows = 2;
    ta.maxLength = 2000;
    ta.placeholder = t('commentPlaceholder');
    var actions = el('div', 'feedback-actions');
    var submit = el('button', 'btn btn-primary feedback-send', t('sendFeedback'));
    submit.type = 'submit';
    var cancel = el('button', 'btn btn-ghost feedback-cancel', t('cancel'));
    cancel.type = 'button';
    actions.appendChild(submit);
    actions.appendChild(cancel);
    form.appendChild(label);
    form.appendChild(ta);
    form.appendChild(actions);
    box.appendChild(form);
    var msg = el('p', 'feedback-msg');
    msg.setAttribute('role', 'status');
    box.appendChild(msg);
    return box;
  }

  function errorText(turn) {
    switch (turn.kind) {
      case 'server': return turn.message || fmt(t('httpError'), { status: turn.status || '?' });
      case 'network': return t('networkError');
      case 'timeout': return t('timeout');
      case 'interrupted': return t('interrupted');
      case 'http': return fmt(t('httpError'), { status: turn.status || '?' });
      default: return t('badResponse');
    }
  }

  function renderError(turn) {
    var article = el('article', 'turn error');
    article.id = 'turn-' + turn.id;
    article.setAttribute('aria-label', t('errorAria'));
    var bubble = el('div', 'bubble');
    var msg = el('p', 'error-message', errorText(turn));
    if (turn.kind === 'server' && turn.code) {
      msg.appendChild(document.createTextNode(' '));
      msg.appendChild(el('span', 'error-code', '(' + turn.code + ')'));
    }
    bubble.appendChild(msg);
    if (turn.question) {
      var actions = el('div', 'error-actions');
      var retry = el('button', 'link-btn retry', t('retry'));
      retry.type = 'button';
      retry.setAttribute('data-turn', String(turn.id));
      retry.disabled = state.busy;
      actions.appendChild(retry);
      bubble.appendChild(actions);
    }
    article.appendChild(bubble);
    return article;
  }

  function renderTurn(turn) {
    if (turn.role === 'question') return renderQuestion(turn);
    if (turn.role === 'answer') return renderAnswer(turn);
    return renderError(turn);
  }

  function renderThread() {
    var frag = document.createDocumentFragment();
    state.turns.forEach(function (turn) {
      try {
        frag.appendChild(renderTurn(turn));
      } catch (e) { /* skip a broken stored turn rather than break the page */ }
    });
    while (els.thread.firstChild) els.thread.removeChild(els.thread.firstChild);
    els.thread.appendChild(frag);
    renderExamples();
    updateEmpty();
  }

  function renderExamples() {
    var ex = t('examples');
    [['zh', els.examplesZh], ['en', els.examplesEn]].forEach(function (pair) {
      var list = pair[1];
      if (!list) return;
      while (list.firstChild) list.removeChild(list.firstChild);
      (ex[pair[0]] || []).forEach(function (q) {
        var li = el('li');
        var btn = el('button', 'example', q);
        btn.type = 'button';
        btn.setAttribute('data-question', q);
        btn.disabled = state.busy;
        li.appendChild(btn);
        list.appendChild(li);
      });
    });
  }

  function updateEmpty() {
    els.empty.hidden = state.turns.length > 0;
  }

  function renderStatus() {
    var s = els.status;
    if (!s) return;
    s.classList.remove('ok', 'down');
    if (state.health === null) {
      s.textContent = '';
    } else if (state.health === false) {
      s.textContent = t('statusDown');
      s.classList.add('down');
    } else {
      var h = state.health;
      s.textContent = fmt(t('statusOk'), {
        documents: formatNumber(Number(h.documents) || 0),
        chunks: formatNumber(Number(h.chunks) || 0)
      });
      s.classList.add('ok');
    }
  }

  function appendTurn(turn) {
    state.turns.push(turn);
    saveThread();
    var node = renderTurn(turn);
    els.thread.appendChild(node);
    updateEmpty();
    return node;
  }

  function scrollToBottom() {
    els.scroller.scrollTop = els.scroller.scrollHeight;
  }

  function scrollToNode(node) {
    if (node && node.scrollIntoView) {
      node.scrollIntoView({ block: 'start', behavior: prefersReducedMotion() ? 'auto' : 'smooth' });
    }
  }

  // ------------------------------------------------------------------
  // Busy state
  // ------------------------------------------------------------------
  function setBusy(busy) {
    state.busy = busy;
    els.question.disabled = busy;
    els.send.disabled = busy;
    els.thinking.hidden = !busy;
    els.thread.setAttribute('aria-busy', busy ? 'true' : 'false');
    var buttons = document.querySelectorAll('.example, .retry');
    for (var i = 0; i < buttons.length; i++) buttons[i].disabled = busy;
  }

  // ------------------------------------------------------------------
  // Networking
  // ------------------------------------------------------------------
  function QueryError(kind, extra) {
    this.kind = kind;
    this.message = (extra && extra.message) || '';
    this.code = (extra && extra.code) || '';
    this.status = (extra && extra.status) || 0;
  }

  function fetchFailure(flags) {
    if (flags.timedOut) return new QueryError('timeout');
    if (flags.cancelled) return new QueryError('cancelled');
    return new QueryError('network');
  }

  // A non-2xx answer: the API's {"error": {"code", "message"}} when it has one.
  function errorFromBody(status, body) {
    var data = null;
    try { data = body ? JSON.parse(body) : null; } catch (e) { data = null; }
    var err = data && data.error;
    if (err && typeof err === 'object' && typeof err.message === 'string' && err.message) {
      return new QueryError('server', { message: err.message, code: str(err.code), status: status });
    }
    if (data && typeof data.error === 'string' && data.error) {
      return new QueryError('server', { message: data.error, status: status });
    }
    return new QueryError('http', { status: status });
  }

  function buildHistory() {
    var history = [];
    state.turns.forEach(function (turn) {
      if (turn.role !== 'answer' || !turn.question || !turn.data) return;
      var answer = Array.from(str(turn.data.answer));
      history.push({
        question: Array.from(str(turn.question)).slice(0, 2000).join(''),
        answer: answer.length > HISTORY_ANSWER_CHARS
          ? answer.slice(0, HISTORY_ANSWER_CHARS).join('') + '…' : answer.join('')
      });
    });
    return history.slice(-MAX_HISTORY);
  }

  function postJson(url, payload, controller, accept) {
    return fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Accept': accept || 'application/json' },
      body: JSON.stringify(payload),
      signal: controller ? controller.signal : undefined,
      credentials: 'same-origin'
    });
  }

  function postQuery(payload, controller, flags) {
    var request;
    try {
      request = postJson(API_QUERY, payload, controller);
    } catch (e) {
      return Promise.reject(new QueryError('network'));
    }
    return request.then(function (res) {
      return res.text().then(function (body) {
        if (!res.ok) throw errorFromBody(res.status, body);
        var data = null;
        try { data = body ? JSON.parse(body) : null; } catch (e) { data = null; }
        if (!data || typeof data !== 'object') throw new QueryError('bad');
        return normalizeResponse(data);
      });
    }, function () {
      throw fetchFailure(flags);
    }).catch(function (e) {
      if (e instanceof QueryError) throw e;
      throw fetchFailure(flags);
    });
  }

  // Server-Sent Events over fetch (EventSource cannot POST): `meta`, `delta`*,
  // then `done` with the full response, or `error`. Resolves to null when the
  // server has no stream endpoint, so the caller falls back to /api/query.
  function postStream(payload, controller, flags, handlers) {
    var request;
    try {
      request = postJson(API_STREAM, payload, controller, 'text/event-stream');
    } catch (e) {
      return Promise.reject(new QueryError('network'));
    }
    var started = false;
    return request.then(function (res) {
      if (res.status === 404 || res.status === 405 || res.status === 501) return null;
      var ctype = (res.headers.get('Content-Type') || '').toLowerCase();
      if (!res.ok) return res.text().then(function (body) { throw errorFromBody(res.status, body); });
      if (ctype.indexOf('text/event-stream') !== 0 || !res.body || typeof res.body.getReader !== 'function') {
        return null;
      }
      var reader = res.body.getReader();
      var decoder = new TextDecoder('utf-8');
      var buffer = '';
      var result = null;

      function dispatch(block) {
        var event = 'message';
        var lines = [];
        block.split(/\r\n|\r|\n/).forEach(function (line) {
          if (!line || line.charAt(0) === ':') return;
          var i = line.indexOf(':');
          var field = i < 0 ? line : line.slice(0, i);
          var value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
          if (field === 'event') event = value;
          else if (field === 'data') lines.push(value);
        });
        if (!lines.length) return;
        var data;
        try { data = JSON.parse(lines.join('\n')); } catch (e) { throw new QueryError('bad'); }
        started = true;
        if (event === 'meta') handlers.meta(data);
        else if (event === 'delta') handlers.delta(data && typeof data.text === 'string' ? data.text : '');
        else if (event === 'done') result = normalizeResponse(data);
        else if (event === 'error') throw errorFromBody(500, JSON.stringify(data));
      }

      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) {
            buffer += decoder.decode();
            if (buffer.trim()) dispatch(buffer);
            if (!result) throw new QueryError(started ? 'interrupted' : 'bad');
            return result;
          }
          buffer += decoder.decode(chunk.value, { stream: true });
          var parts = buffer.split(/\r\n\r\n|\n\n|\r\r/);
          buffer = parts.pop();
          for (var i = 0; i < parts.length; i++) {
            dispatch(parts[i]);
            if (result) {
              try { reader.cancel(); } catch (e) { /* already closed */ }
              return result;
            }
          }
          return pump();
        });
      }
      return pump();
    }, function () {
      throw fetchFailure(flags);
    }).catch(function (e) {
      if (e instanceof QueryError) throw e;
      if (flags.timedOut) throw new QueryError('timeout');
      if (flags.cancelled) throw new QueryError('cancelled');
      throw new QueryError(started ? 'interrupted' : 'network');
    });
  }

  // The answer as it is being written (plain text until `done` brings the
  // sanitised HTML). Not stored: only finished answers enter the thread.
  function draftAnswer() {
    var node = null;
    var body = null;
    var text = '';
    return {
      meta: function (meta) {
        if (node) return;
        node = el('article', 'turn answer draft');
        node.setAttribute('aria-label', t('answering'));
        node.setAttribute('aria-busy', 'true');
        var bubble = el('div', 'bubble');
        body = el('div', 'answer-body');
        var lang = htmlLangFor(meta && meta.lang);
        if (lang) body.setAttribute('lang', lang);
        body.appendChild(el('p', 'answer-plain'));
        bubble.appendChild(body);
        node.appendChild(bubble);
        els.thread.appendChild(node);
      },
      delta: function (piece) {
        if (!node) this.meta({});
        text += piece;
        body.firstChild.textContent = text;
        scrollToBottom();
      },
      remove: function () {
        if (node && node.parentNode) node.parentNode.removeChild(node);
        node = null;
      }
    };
  }

  function runQuery(payload, controller, flags, draft) {
    if (!state.streamAvailable || typeof TextDecoder !== 'function') {
      return postQuery(payload, controller, flags);
    }
    return postStream(payload, controller, flags, draft).then(function (result) {
      if (result) return result;
      state.streamAvailable = false;
      return postQuery(payload, controller, flags);
    });
  }

  function ask(rawQuestion) {
    if (state.busy) return;
    var question = str(rawQuestion).trim();
    if (!question) {
      els.question.focus();
      return;
    }

    var payload = { question: question, top_k: TOP_K };
    var history = buildHistory();
    if (history.length) payload.history = history;

    appendTurn({ id: state.nextId++, role: 'question', text: question });
    els.question.value = '';
    autoGrow();
    setBusy(true);
    scrollToBottom();

    var generation = ++state.generation;
    var controller = typeof AbortController === 'function' ? new AbortController() : { signal: undefined, abort: function () {} };
    var flags = { timedOut: false, cancelled: false };
    state.controller = { abort: function () { flags.cancelled = true; controller.abort(); } };
    var timer = setTimeout(function () { flags.timedOut = true; controller.abort(); }, REQUEST_TIMEOUT_MS);
    var draft = draftAnswer();

    runQuery(payload, controller, flags, draft).then(function (data) {
      draft.remove();
      if (state.health === false) checkHealth(); // the server is back
      if (generation !== state.generation) return;
      var node = appendTurn({ id: state.nextId++, role: 'answer', question: question, data: data });
      finish();
      scrollToNode(node);
    }, function (err) {
      draft.remove();
      if (err.kind === 'network' || err.kind === 'interrupted') {
        state.health = false;
        renderStatus();
      }
      if (generation !== state.generation || err.kind === 'cancelled') return;
      appendTurn({
        id: state.nextId++,
        role: 'error',
        kind: err.kind || 'bad',
        message: err.message || '',
        code: err.code || '',
        status: err.status || 0,
        question: question
      });
      finish();
      scrollToBottom();
    });

    function finish() {
      clearTimeout(timer);
      state.controller = null;
      setBusy(false);
      els.question.focus();
    }
  }

  // ------------------------------------------------------------------
  // Feedback
  // ------------------------------------------------------------------
  function feedbackBox(node) {
    var box = node.closest('.feedback');
    if (!box) return null;
    var id = Number(box.getAttribute('data-turn'));
    var turn = state.turns.filter(function (x) { return x.id === id; })[0];
    return turn ? { box: box, turn: turn } : null;
  }

  function chooseRating(btn) {
    var fb = feedbackBox(btn);
    if (!fb) return;
    var rating = btn.getAttribute('data-rating');
    fb.box.setAttribute('data-rating', rating);
    var buttons = fb.box.querySelectorAll('button.rate');
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].setAttribute('aria-pressed', buttons[i] === btn ? 'true' : 'false');
    }
    var form = fb.box.querySelector('.feedback-form');
    form.hidden = false;
    fb.box.querySelector('.feedback-msg').textContent = '';
    form.querySelector('textarea').focus();
  }

  function cancelFeedback(btn) {
    var fb = feedbackBox(btn);
    if (!fb) return;
    fb.box.removeAttribute('data-rating');
    var buttons = fb.box.querySelectorAll('button.rate');
    for (var i = 0; i < buttons.length; i++) buttons[i].setAttribute('aria-pressed', 'false');
    fb.box.querySelector('.feedback-form').hidden = true;
    buttons[0].focus();
  }

  function sendFeedback(form) {
    var fb = feedbackBox(form);
    if (!fb) return;
    var rating = fb.box.getAttribute('data-rating');
    if (rating !== 'up' && rating !== 'down') return;
    var data = fb.turn.data;
    var answer = Array.from(str(data.answer)).slice(0, MAX_FEEDBACK_ANSWER_CHARS).join('');
    var payload = {
      rating: rating,
      question: str(fb.turn.question),
      answer: answer,
      passages: data.passages.map(function (p) {
        return { id: p.id, source: p.source, url: p.url };
      })
    };
    var comment = form.querySelector('textarea').value.trim();
    if (comment) payload.comment = comment;
    if (data.lang === 'zh' || data.lang === 'en') payload.lang = data.lang;

    var msg = fb.box.querySelector('.feedback-msg');
    var submit = form.querySelector('.feedback-send');
    msg.classList.remove('error');
    msg.textContent = t('sending');
    submit.disabled = true;
    var turnId = fb.turn.id;
    var request;
    try {
      request = postJson(API_FEEDBACK, payload, null);
    } catch (e) {
      request = Promise.reject(e);
    }
    request.then(function (res) {
      return res.text().then(function (body) {
        if (!res.ok) throw errorFromBody(res.status, body);
        var out = JSON.parse(body);
        return out && out.id;
      });
    }).then(function (id) {
      var turn = state.turns.filter(function (x) { return x.id === turnId; })[0];
      if (!turn) return;
      turn.feedback = { rating: rating, id: id };
      saveThread();
      var box = els.thread.querySelector('.feedback[data-turn="' + turnId + '"]');
      if (box) {
        var fresh = renderFeedback(turn);
        box.parentNode.replaceChild(fresh, box);
        fresh.firstChild.setAttribute('tabindex', '-1');
        fresh.firstChild.focus();
      }
    }, function (err) {
      submit.disabled = false;
      var text = err instanceof QueryError ? errorText(err) : t('networkError');
      msg.classList.add('error');
      msg.textContent = fmt(t('feedbackError'), { message: text });
    });
  }

  function checkHealth() {
    if (typeof fetch !== 'function') return;
    var controller = typeof AbortController === 'function' ? new AbortController() : null;
    var timer = setTimeout(function () { if (controller) controller.abort(); }, 10000);
    fetch(API_HEALTH, { headers: { 'Accept': 'application/json' }, signal: controller ? controller.signal : undefined })
      .then(function (res) {
        if (!res.ok) throw new Error('HTTP ' + res.status);
        return res.json();
      })
      .then(function (data) {
        state.health = data && typeof data === 'object' && data.status === 'ok' ? data : false;
      }, function () {
        state.health = false;
      })
      .then(function () {
        clearTimeout(timer);
        renderStatus();
      });
  }

  // ------------------------------------------------------------------
  // Interactions
  // ------------------------------------------------------------------
  function autoGrow() {
    var q = els.question;
    q.style.height = 'auto';
    q.style.height = Math.min(q.scrollHeight + 2, 200) + 'px';
  }

  function clearConversation() {
    if (state.controller) state.controller.abort();
    state.generation++;
    state.controller = null;
    state.turns = [];
    state.nextId = 1;
    saveThread();
    setBusy(false);
    renderThread();
    els.scroller.scrollTop = 0;
    els.question.focus();
  }

  function focusSource(turnId, n) {
    var card = document.getElementById('src-' + turnId + '-' + n);
    if (!card) return;
    card.scrollIntoView({ block: 'nearest', behavior: prefersReducedMotion() ? 'auto' : 'smooth' });
    try { card.focus({ preventScroll: true }); } catch (e) { card.focus(); }
    card.classList.remove('highlight');
    void card.offsetWidth; // restart the animation
    card.classList.add('highlight');
    clearTimeout(card._kbqaTimer);
    card._kbqaTimer = setTimeout(function () { card.classList.remove('highlight'); }, 2300);
  }

  function toggleSource(btn) {
    var card = btn.closest('.source');
    if (!card) return;
    var full = card.querySelector('.source-full');
    var snippet = card.querySelector('.source-snippet');
    if (!full) return;
    var expand = btn.getAttribute('aria-expanded') !== 'true';
    var n = btn.getAttribute('data-n');
    full.hidden = !expand;
    if (snippet) snippet.hidden = expand;
    btn.setAttribute('aria-expanded', expand ? 'true' : 'false');
    btn.textContent = expand ? t('hide') : t('show');
    btn.setAttribute('aria-label', fmt(t(expand ? 'hideLabel' : 'showLabel'), { n: n }));
    card.classList.toggle('expanded', expand);
  }

  function fallbackCopy(text) {
    var ta = document.createElement('textarea');
    ta.value = text;
    ta.setAttribute('readonly', '');
    ta.className = 'sr-only';
    document.body.appendChild(ta);
    ta.select();
    var ok = false;
    try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
    document.body.removeChild(ta);
    return ok;
  }

  function copyCode(btn) {
    var wrap = btn.closest('.code-wrap');
    var pre = wrap && wrap.querySelector('pre');
    if (!pre) return;
    var text = pre.textContent.replace(/\n$/, '');
    var done = function (ok) {
      btn.textContent = ok ? t('copied') : t('copyFailed');
      btn.classList.toggle('copied', ok);
      clearTimeout(btn._kbqaTimer);
      btn._kbqaTimer = setTimeout(function () {
        btn.textContent = t('copy');
        btn.classList.remove('copied');
      }, 1600);
    };
    if (navigator.clipboard && typeof navigator.clipboard.writeText === 'function') {
      navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(fallbackCopy(text)); });
    } else {
      done(fallbackCopy(text));
    }
  }

  function onThreadClick(e) {
    var target = e.target;
    if (!(target instanceof Element)) return;

    var cite = target.closest('a.cite');
    if (cite && els.thread.contains(cite)) {
      e.preventDefault();
      focusSource(cite.getAttribute('data-turn'), cite.getAttribute('data-n'));
      return;
    }
    var toggle = target.closest('button.toggle');
    if (toggle) {
      toggleSource(toggle);
      return;
    }
    var copy = target.closest('button.copy');
    if (copy) {
      copyCode(copy);
      return;
    }
    var rate = target.closest('button.rate');
    if (rate) {
      chooseRating(rate);
      return;
    }
    var cancel = target.closest('button.feedback-cancel');
    if (cancel) {
      cancelFeedback(cancel);
      return;
    }
    var retry = target.closest('button.retry');
    if (retry && !state.busy) {
      var id = Number(retry.getAttribute('data-turn'));
      var turn = state.turns.filter(function (x) { return x.id === id; })[0];
      if (turn && turn.question) ask(turn.question);
    }
  }

  function onKeydown(e) {
    if (e.key !== 'Enter' || e.shiftKey || e.altKey) return;
    // Do not send while an IME (e.g. Chinese pinyin input) is composing.
    if (e.isComposing || e.keyCode === 229) return;
    e.preventDefault();
    ask(els.question.value);
  }

  // ------------------------------------------------------------------
  // Boot
  // ------------------------------------------------------------------
  function init() {
    els.thread = document.getElementById('thread');
    els.scroller = document.getElementById('scroller');
    els.empty = document.getElementById('empty');
    els.examplesZh = document.getElementById('examples-zh');
    els.examplesEn = document.getElementById('examples-en');
    els.thinking = document.getElementById('thinking');
    els.form = document.getElementById('ask-form');
    els.question = document.getElementById('question');
    els.send = document.getElementById('send');
    els.clear = document.getElementById('clear');
    els.langToggle = document.getElementById('lang-toggle');
    els.status = document.getElementById('status');

    state.lang = detectLang();
    loadThread();
    applyStaticStrings();
    renderThread();
    setBusy(false);

    els.form.addEventListener('submit', function (e) {
      e.preventDefault();
      ask(els.question.value);
    });
    els.question.addEventListener('keydown', onKeydown);
    els.question.addEventListener('input', autoGrow);
    els.thread.addEventListener('click', onThreadClick);
    els.thread.addEventListener('submit', function (e) {
      var form = e.target instanceof Element ? e.target.closest('form.feedback-form') : null;
      if (!form) return;
      e.preventDefault();
      sendFeedback(form);
    });
    els.empty.addEventListener('click', function (e) {
      var btn = e.target instanceof Element ? e.target.closest('button.example') : null;
      if (btn && !btn.disabled) ask(btn.getAttribute('data-question') || btn.textContent);
    });
    els.clear.addEventListener('click', clearConversation);
    els.langToggle.addEventListener('click', function () {
      setLang(state.lang === 'zh' ? 'en' : 'zh');
    });

    autoGrow();
    // A restored thread opens at its latest answer; the empty state at its title.
    if (state.turns.length) scrollToBottom();
    checkHealth();
    if (!('ontouchstart' in window)) els.question.focus();
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
})();
