module.exports = require('./bundle').teardown
