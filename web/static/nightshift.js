// nightshift's own script, next to htmx: the pages carry no inline JavaScript (their
// Content-Security-Policy allows scripts from /static only), so behaviour comes from
// data- attributes read here.
//
//   <form data-confirm="Delete pool x?">   asks before the form is sent; the message is
//                                          plain text, never evaluated
//   <select data-autosubmit>               sends its form when the choice changes
//   <a href="/dags" data-back>              goes back in history (the href without it)
//   <pre data-scroll-end>                  a log: opens scrolled to its end (or to the line
//                                          the address names, #L123); lines htmx adds
//                                          keep the view in place ("earlier lines", marked
//                                          data-earlier) or follow the end if it was shown
//   <div data-live hx-get=… hx-trigger=…> a page's changing part, which htmx polls while
//                                          something shown is unfinished; a poll is skipped
//                                          while focus or a changed field is inside it (a
//                                          swap would lose them)
//
// Loaded without `defer` in <head>, so the listeners exist before any form does.
(function () {
  'use strict';

  document.addEventListener('submit', function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute('data-confirm')) return;
    if (!window.confirm(form.getAttribute('data-confirm'))) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  document.addEventListener('change', function (event) {
    var field = event.target;
    if (!(field instanceof HTMLSelectElement) || !field.hasAttribute('data-autosubmit')) return;
    var form = field.form;
    if (!form) return;
    // requestSubmit fires `submit`, so a data-confirm on the form still applies.
    if (typeof form.requestSubmit === 'function') form.requestSubmit();
    else form.submit();
  });

  function openLogs() {
    var named = /^#L[0-9]+$/.test(window.location.hash)
      ? document.getElementById(window.location.hash.slice(1)) : null;
    document.querySelectorAll('[data-scroll-end]').forEach(function (box) {
      if (named && box.contains(named)) {
        named.classList.add('named');
        box.scrollTop = named.offsetTop - box.offsetTop - box.clientHeight / 3;
      } else {
        box.scrollTop = box.scrollHeight;
      }
    });
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', openLogs);
  else openLogs();

  // Where a log box was before htmx changed it, to put the view back after.
  var logPlace = null;
  document.addEventListener('htmx:beforeSwap', function (event) {
    var target = event.detail && event.detail.target;
    var box = target instanceof Element ? target.closest('[data-scroll-end]') : null;
    if (!box) return;
    logPlace = {
      box: box,
      fromEnd: box.scrollHeight - box.scrollTop,
      atEnd: box.scrollHeight - box.scrollTop - box.clientHeight < 8,
      earlier: target.hasAttribute('data-earlier')
    };
  });
  // A newer try's log box, swapped in by the task page's live part, opens at its end.
  document.addEventListener('htmx:oobAfterSwap', function (event) {
    var swapped = event.detail && event.detail.target;
    if (!(swapped instanceof Element)) return;
    swapped.querySelectorAll('[data-scroll-end]').forEach(function (box) {
      box.scrollTop = box.scrollHeight;
    });
  });
  document.addEventListener('htmx:afterSettle', function () {
    if (!logPlace) return;
    var place = logPlace;
    logPlace = null;
    if (place.earlier) place.box.scrollTop = place.box.scrollHeight - place.fromEnd;
    else if (place.atEnd) place.box.scrollTop = place.box.scrollHeight;
  });

  function changed(field) {
    if (field instanceof HTMLInputElement) {
      return field.type === 'checkbox' || field.type === 'radio'
        ? field.checked !== field.defaultChecked : field.value !== field.defaultValue;
    }
    if (field instanceof HTMLTextAreaElement) return field.value !== field.defaultValue;
    if (field instanceof HTMLSelectElement) {
      return Array.prototype.some.call(field.options, function (o) { return o.selected !== o.defaultSelected; });
    }
    return false;
  }
  document.addEventListener('htmx:beforeRequest', function (event) {
    var region = event.detail && event.detail.elt;
    if (!(region instanceof Element) || !region.hasAttribute('data-live')) return;
    var active = document.activeElement;
    var busy = (active && active !== document.body && region.contains(active)) ||
      Array.prototype.some.call(region.querySelectorAll('input, select, textarea'), changed);
    if (busy) event.preventDefault();
  });

  document.addEventListener('click', function (event) {
    var link = event.target instanceof Element ? event.target.closest('a[data-back]') : null;
    if (!link || window.history.length < 2) return;
    event.preventDefault();
    window.history.back();
  });
})();
