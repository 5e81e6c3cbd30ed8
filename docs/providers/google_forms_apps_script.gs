/**
 * hookhub for Google Forms: push every response to a hookhub source, signed the Standard Webhooks way.
 *
 * Install (details in google_forms_apps_script.md): open the form, Extensions -> Apps Script, paste this file,
 * set the Script Properties HOOKHUB_URL and HOOKHUB_SECRET, run installTrigger() once and authorize.
 *
 * Body (what hookhub's `google_forms_apps_script` connector reads):
 *   {"type": "form.response.submitted", "timestamp": ISO,
 *    "data": {form_id, form_title, response_id, submitted_at, respondent_email, edit_response_url,
 *             items: [{item_id, title, type, response}]}}
 * Headers: webhook-id = the FormResponse id (the same on every retry, so hookhub dedupes), webhook-timestamp,
 * webhook-signature = "v1," + base64(HMAC-SHA256(base64decode(secret without "whsec_"), id.timestamp.body)).
 */

var SUBMITTED = 'form.response.submitted';
var PING = 'hookhub.ping';
// Waits between attempts; their sum stays well below Apps Script's 6-minute execution limit.
var RETRY_DELAYS_SECONDS = [5, 15, 45, 120];

/** Installable "On form submit" trigger (created by installTrigger). */
function onFormSubmit(e) {
  var response = e.response;
  var form = e.source || FormApp.getActiveForm();
  deliver_(response.getId(), responseMessage_(form, response));
}

/** Run once from the editor: (re)creates the trigger and sends a signed ping to check URL and secret. */
function installTrigger() {
  var form = FormApp.getActiveForm();
  ScriptApp.getProjectTriggers().forEach(function (trigger) {
    if (trigger.getHandlerFunction() === 'onFormSubmit') ScriptApp.deleteTrigger(trigger);
  });
  ScriptApp.newTrigger('onFormSubmit').forForm(form).onFormSubmit().create();
  sendPing();
}

/** Posts a signed hookhub.ping; hookhub answers {"status": "test", ...} when URL and secret are right. */
function sendPing() {
  var form = FormApp.getActiveForm();
  var message = {
    type: PING,
    timestamp: new Date().toISOString(),
    data: { form_id: form.getId(), form_title: form.getTitle() }
  };
  deliver_('ping_' + Utilities.getUuid(), message);
}

function responseMessage_(form, response) {
  var items = response.getItemResponses().map(function (itemResponse) {
    var item = itemResponse.getItem();
    var type = String(item.getType());
    return {
      item_id: item.getId(),
      title: item.getTitle(),
      type: type,
      response: convertResponse_(type, itemResponse.getResponse())
    };
  });
  return {
    type: SUBMITTED,
    timestamp: new Date().toISOString(),
    data: {
      form_id: form.getId(),
      form_title: form.getTitle(),
      response_id: response.getId(),
      submitted_at: response.getTimestamp().toISOString(),
      respondent_email: response.getRespondentEmail() || null,
      edit_response_url: response.getEditResponseUrl(),
      items: items
    }
  };
}

function convertResponse_(type, value) {
  if (type === 'SCALE' || type === 'RATING') return Number(value);
  if (type === 'FILE_UPLOAD') {
    // getResponse() gives Drive file ids; links are what a person or a destination can open.
    return value.map(function (id) { return 'https://drive.google.com/open?id=' + id; });
  }
  if (type === 'CHECKBOX_GRID') {
    // One entry per row; a row's ticked columns joined, an unanswered row as "".
    return value.map(function (row) { return row ? row.join(', ') : ''; });
  }
  if (type === 'GRID') {
    return value.map(function (cell) { return cell || ''; });
  }
  return value;
}

function settings_() {
  var props = PropertiesService.getScriptProperties();
  var url = props.getProperty('HOOKHUB_URL');
  var secret = props.getProperty('HOOKHUB_SECRET');
  if (!url || !secret) {
    throw new Error('Set the Script Properties HOOKHUB_URL and HOOKHUB_SECRET (Project Settings -> Script Properties).');
  }
  return { url: url, secret: secret };
}

function sign_(secret, msgId, timestamp, bodyBytes) {
  var key = Utilities.base64Decode(secret.replace(/^whsec_/, ''));
  var signed = Utilities.newBlob(msgId + '.' + timestamp + '.').getBytes().concat(bodyBytes);
  return 'v1,' + Utilities.base64Encode(Utilities.computeHmacSha256Signature(signed, key));
}

/** Posts until a 2xx; retries keep the same webhook-id so hookhub records one submission. */
function deliver_(msgId, message) {
  var settings = settings_();
  // Sign and send the same UTF-8 bytes: a string payload could be re-encoded on the way out.
  var body = Utilities.newBlob(JSON.stringify(message)).getBytes();
  var lastProblem = '';
  for (var attempt = 0; attempt <= RETRY_DELAYS_SECONDS.length; attempt++) {
    if (attempt > 0) Utilities.sleep(RETRY_DELAYS_SECONDS[attempt - 1] * 1000);
    // A fresh timestamp per attempt: hookhub rejects signatures older than its tolerance (default 5 min).
    var timestamp = String(Math.floor(Date.now() / 1000));
    try {
      var result = UrlFetchApp.fetch(settings.url, {
        method: 'post',
        contentType: 'application/json',
        payload: body,
        headers: {
          'webhook-id': msgId,
          'webhook-timestamp': timestamp,
          'webhook-signature': sign_(settings.secret, msgId, timestamp, body)
        },
        muteHttpExceptions: true,
        followRedirects: false
      });
      var status = result.getResponseCode();
      var text = result.getContentText();
      if (status >= 200 && status < 300) {
        console.log('hookhub ' + status + ' for ' + msgId + ': ' + text);
        return;
      }
      lastProblem = 'HTTP ' + status + ': ' + text;
      // Other 4xx (bad secret, unknown source, wrong content type) will not fix themselves by retrying.
      if (status < 500 && status !== 408 && status !== 429) break;
    } catch (err) {
      lastProblem = String(err);  // DNS, TLS, timeout: worth retrying
    }
    console.warn('hookhub attempt ' + (attempt + 1) + ' for ' + msgId + ' failed: ' + lastProblem);
  }
  // Throwing marks the execution failed, so Apps Script's trigger-failure e-mail reaches the form owner.
  throw new Error('hookhub delivery of ' + msgId + ' failed: ' + lastProblem);
}
